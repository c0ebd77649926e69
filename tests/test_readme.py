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


def _python_block_after(heading: str) -> str:
  text = (ROOT / "README.md").read_text()
  section = text[text.index(heading):]
  start = section.index("```python\n") + len("```python\n")
  return section[start:section.index("```", start)]


def test_readme_losses_example_runs():
  import runpy
  import tempfile

  with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
    f.write(_python_block_after("## Use the losses in your own code"))
  namespace = runpy.run_path(f.name)
  # The example fuses two experts and computes an EMD for a permuted, translated cloud:
  # the exact EMD of a pure translation by (0.01, 0.01, 0.01) is 0.01 * sqrt(3).
  # Documented accuracy of the entropic EMD: within 5% of exact at the defaults.
  assert abs(float(namespace["emd"]) - 0.01 * 3**0.5) < 0.05 * 0.01 * 3**0.5
