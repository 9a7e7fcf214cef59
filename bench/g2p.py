"""Kokoro's English G2P on this CPU (misaki + spaCy), cold and warm.

What the first audio of a Kokoro job waits for besides the model: the G2P of its
first sentence. Rows: importing kokoro's pipeline module, making the English
pipeline without a model (``KPipeline(lang_code="a", model=False)``: misaki's G2P,
which loads spaCy's ``en_core_web_sm``), its first call, then warm calls per
sentence (median and max) and on the whole paragraph. The Kokoro runner makes that
pipeline in ``setup`` so no job waits for the load, and a streaming job runs G2P
sentence by sentence.

Run it with the kokoro profile's interpreter (``<kokoro env>/bin/python
bench/g2p.py``). The last line is ``g2p_sentence_ms=<warm median>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu import PARAGRAPH_SENTENCES as SENTENCES  # noqa: E402  (bench/, this script's directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="warm passes over the sentences")
    args = parser.parse_args()

    started = time.perf_counter()
    from kokoro import KPipeline

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline = KPipeline(lang_code="a", repo_id="hexgrad/Kokoro-82M", model=False)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    pipeline.g2p(SENTENCES[0])
    first_s = time.perf_counter() - started

    per_sentence = []
    for _ in range(args.runs):
        for sentence in SENTENCES:
            started = time.perf_counter()
            pipeline.g2p(sentence)
            per_sentence.append(time.perf_counter() - started)
    paragraph = []
    for _ in range(args.runs):
        started = time.perf_counter()
        pipeline.g2p(" ".join(SENTENCES))
        paragraph.append(time.perf_counter() - started)

    median_ms = 1000 * statistics.median(per_sentence)
    worst_ms, paragraph_ms = 1000 * max(per_sentence), 1000 * statistics.median(paragraph)
    print(f"misaki G2P, American English, {len(SENTENCES)} sentences x {args.runs}")
    print(f"{'import kokoro.KPipeline':<44} {import_s:8.2f} s")
    print(f"{'KPipeline(a, model=False): spaCy loads':<44} {load_s:8.2f} s")
    print(f"{'first call':<44} {1000 * first_s:8.1f} ms")
    print(f"{'warm sentence, median / max':<44} {median_ms:8.1f} / {worst_ms:.1f} ms")
    print(f"{'warm paragraph (6 sentences), median':<44} {paragraph_ms:8.1f} ms")
    print(f"g2p_sentence_ms={median_ms:.3f}")


if __name__ == "__main__":
    main()
