"""`odrecords validate OUTPUT`: the checks a CI pipeline stops on, read from what `create` wrote.

The checks themselves (`transforms.builds.checks`) count findings in the published build's
`manifest.json` and the files beside it; here they are printed, a line per check and the
files involved in a failed one. `create --strict` makes the same checks before publishing
and prints them the same way (`print_findings`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.flags import UsageError, validate_parser
from pipelines.settings import check_beam_flags, thresholds, use_filesystem_options
from transforms.builds.checks import Finding, Thresholds
from transforms.builds.checks import check as check_build
from transforms.builds.layout import MANIFEST, latest_folder
from transforms.builds.outputs import NotOurOutput, read_summary


def published_folder(output: str) -> str:
    """The folder of the output's published build; raises UsageError when there is none."""
    try:
        folder = latest_folder(output)
    except (NotOurOutput, OSError) as error:
        raise UsageError(f"{output}: {error}") from None
    if folder is None:
        raise UsageError(f"{output} holds no published odrecords output")
    return folder


def check(folder: str, limits: Thresholds) -> list[Finding]:
    """Every check on the published build in `folder`; raises UsageError when its manifest
    is not one odrecords wrote."""
    try:
        manifest = read_summary(FileSystems.join(folder, MANIFEST))
    except (NotOurOutput, OSError, ValueError) as error:
        raise UsageError(f"{folder}: {error}") from None
    return check_build(manifest, folder, limits)


def print_findings(findings: list[Finding]) -> int:
    """Prints a line per check, and the files involved in a failed one; returns how many
    failed."""
    failed = 0
    for finding in findings:
        if finding.count is None:
            print(
                f"{'FAIL' if finding.failed else 'skip'}  {finding.text()}",
                file=sys.stderr if finding.failed else sys.stdout,
            )
        else:
            print(f"{'FAIL' if finding.failed else 'ok  '}  {finding.text()}")
            if finding.failed:
                for name in finding.files:
                    print(f"        {name}")
                if finding.more:
                    print(f"        ... {finding.more} more")
        failed += finding.failed
    return failed


def report(findings: list[Finding], prog: str) -> int:
    """Prints the checks (`print_findings`) and returns the exit code: 1 when a check failed,
    or one asked for by its flag could not be made."""
    failed = print_findings(findings)
    if failed:
        print(f"{prog}: error: {failed} of {len(findings)} checks failed", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every check passes, 1 when one fails, 2 for unusable arguments."""
    prog = "odrecords validate"
    try:
        args, beam_args = validate_parser().parse_known_args(sys.argv[1:] if argv is None else argv)
        check_beam_flags(beam_args)
        use_filesystem_options(beam_args)
        findings = check(published_folder(args.output), thresholds(vars(args)))
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return report(findings, prog)


if __name__ == "__main__":
    sys.exit(main())
