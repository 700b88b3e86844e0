"""atheris: the knowledge API's request models (search, listings, writes, path ids), on one
body's bytes.

    python fuzz/fuzz_requests.py -max_total_time=3600 [corpus dir]

See ``fuzz/targets/requests.py`` for what is checked; the first byte picks the model and the cap.
"""

import _atheris

if __name__ == "__main__":
    _atheris.run("requests", "check_request_bytes")
