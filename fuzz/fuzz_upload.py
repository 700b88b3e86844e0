"""atheris: the multipart upload path, from a request's bytes to the acceptance point (G10).

    python fuzz/fuzz_upload.py -max_total_time=3600 [corpus dir]

See ``fuzz/targets/upload.py`` for what one input is and what is checked.
"""

import _atheris

if __name__ == "__main__":
    _atheris.run("upload", "check_upload_bytes", libraries=("werkzeug", "quart", "quart_trio"))
