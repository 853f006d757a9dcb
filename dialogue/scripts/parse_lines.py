"""Parse utterances with a trained model, without a running server (run in the Rasa environment).

stdin: one utterance per line. stdout: one JSON object per line (hotline_domain.nlu.parse_result), the same as
`hotline nlu parse` writes when it asks a running server.
Usage: python parse_lines.py MODEL.tar.gz
"""

import asyncio
import json
import logging
import sys


async def main(model_path: str) -> None:
    import structlog
    from rasa.core.agent import Agent

    from hotline_domain.nlu import MAX_TEXT, parse_result

    logging.disable(logging.WARNING)
    # Rasa logs through structlog, which prints debug lines to stdout unless told otherwise: stdout is ours
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    agent = Agent.load(model_path)
    for line in sys.stdin:
        text = line.rstrip("\n")
        parsed = await agent.parse_message(text[:MAX_TEXT]) if text.strip() else {}
        sys.stdout.write(json.dumps(parse_result(text, parsed), ensure_ascii=False) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.stdin.reconfigure(encoding="utf-8", errors="replace")
    sys.stdout.reconfigure(encoding="utf-8")
    asyncio.run(main(sys.argv[1]))
