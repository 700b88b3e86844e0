"""atheris: the EverOS markdown readers and the built-in extractor, on one file's bytes.

    python fuzz/fuzz_markdown.py -max_total_time=3600 [corpus dir]

See ``fuzz/targets/markdown.py`` for what is checked.
"""

import _atheris

if __name__ == "__main__":
    _atheris.run("markdown", "check_markdown_bytes", libraries=("yaml", "markdown_it"))
