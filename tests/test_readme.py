"""The README's set-up commands and CI's command must not drift apart."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ci_test_command() -> str:
  lines = (ROOT / ".ci" / "run").read_text().splitlines()
  marker = next(i for i, line in enumerate(lines) if "README test command" in line)
  return lines[marker + 1].strip()


def test_ci_runs_the_readme_test_command():
  command = _ci_test_command()
  assert "pytest" in command
  assert command in (ROOT / "README.md").read_text()
