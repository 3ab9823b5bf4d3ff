"""Build the synthetic (speech, motion) training corpus of the motion diffusion model.

    python -m jobs.build_corpus --out /data/corpus --hours 2 --seed 0 [--shard-utterances 200]
    python -m jobs.build_corpus --out /data/corpus --retarget     # new mouth recipe, same speech
    python -m jobs.build_corpus --out /data/recorded --recordings DIR --transcripts LIST [--copies 2] [--exclude NAME ...]

Speech from three text-to-speech engines (``jobs.corpus.engines``) or, with ``--recordings``,
recorded voices (``jobs/recordings.py``), augmented (``jobs.corpus.augment``), with target
motion from the phones (``jobs.corpus.targets``), written as shards under ``--out`` (local path
or s3:// URI; the layout is in ``jobs.corpus.shards``). ``--retarget`` rewrites the mouth
channels of an existing corpus from the phones and clean levels its shards keep. Train on
the corpora together (``jobs/train_motion.py --corpus SYNTH RECORDED ...``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from jobs.corpus.build import build
from jobs.corpus.shards import retarget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="output prefix (local path or s3:// URI)")
    parser.add_argument("--hours", type=float, default=None, help="hours of speech to build")
    parser.add_argument("--retarget", action="store_true",
                        help="rewrite the mouth targets of the corpus already under --out (no new speech)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard-utterances", type=int, default=200, help="utterances per shard (~)")
    parser.add_argument("--recordings", type=Path, default=None,
                        help="folder of recorded speech to use instead of synthesis (see jobs/recordings.py)")
    parser.add_argument("--transcripts", type=Path, default=None, help="transcript list of --recordings ('name: text' lines)")
    parser.add_argument("--language", default="en",
                        help="espeak-ng code of the recordings' language: en is aligned with pocketsphinx, "
                             "others with espeak-ng + DTW (workers/audio/align.py)")
    parser.add_argument("--copies", type=int, default=2, help="differently augmented copies of each recording")
    parser.add_argument("--exclude", nargs="*", default=[], metavar="NAME",
                        help="recordings to leave out (names as in --transcripts), e.g. the source of a benchmark clip")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.retarget:
        summary = retarget(args.out)
        print(f"retargeted {len(summary['shards'])} shards (articulation gain {summary['articulation_gain']})")
        return 0
    if args.recordings:
        if not args.transcripts:
            parser.error("--recordings needs --transcripts")
        from core.errors import BadInputError
        from core.languages import check_language, is_english
        from jobs.recordings import find_recordings, read_transcripts
        from workers.audio.phonemes import in_dictionary

        try:
            args.language = check_language(args.language)
        except BadInputError as error:
            parser.error(str(error))
        recordings, left_out = find_recordings(args.recordings, read_transcripts(args.transcripts),
                                               known_word=in_dictionary if is_english(args.language) else None,
                                               exclude=frozenset(args.exclude), language=args.language)
        if not recordings:
            raise SystemExit(f"no usable recording under {args.recordings} ({dict(left_out)})")
        summary = build(args.out, None, args.seed, args.shard_utterances, progress=not args.no_progress,
                        recordings=recordings, copies=args.copies,
                        recorded_from={"folder": str(args.recordings), "transcripts": str(args.transcripts),
                                       "language": args.language, "used": len(recordings), "left_out": dict(left_out)})
    elif args.hours is None:
        parser.error("--hours (synthesised speech) or --recordings is required to build a corpus")
    else:
        summary = build(args.out, args.hours, args.seed, args.shard_utterances, progress=not args.no_progress)
    print(f"corpus: {summary['hours']:.3f} h, {summary['utterances']} utterances, {len(summary['shards'])} shards "
          f"in {summary['build_seconds']:.0f} s ({summary['realtime_factor']:.1f}x real time), "
          f"skipped {sum(summary['skipped'].values())}")
    for key in ("engines", "languages", "voices", "augmentations"):
        print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in summary[key].items()))
    if "recordings" in summary:
        print(f"  recordings: {summary['recordings']['used']} used x {summary['recordings']['copies']} copies, left out: "
              + ", ".join(f"{k}={v}" for k, v in summary["recordings"]["left_out"].items()))
    if summary["unknown_phones"]:
        print("  unknown phones: " + ", ".join(f"{k!r}={v}" for k, v in summary["unknown_phones"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
