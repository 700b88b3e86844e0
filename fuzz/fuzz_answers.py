"""atheris: the readers of model answers (chat, embeddings, rerank, streams, topic trees, facts,
the classification), on one answer's bytes.

    python fuzz/fuzz_answers.py -max_total_time=3600 [corpus dir]

See ``fuzz/targets/answers.py`` for what is checked; the first byte picks the counts and sizes.
"""

import _atheris

if __name__ == "__main__":
    _atheris.run("answers", "check_answer_bytes")
