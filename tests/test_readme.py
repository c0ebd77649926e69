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


def test_quickstart_figure_is_the_same_in_readme_docstring_and_results():
  # The README's first command, its config docstring and RESULTS.md's quickstart row quote one
  # measured run (issue 17): the same test mean EPE and mean-pose baseline in all three.
  import re
  readme = (ROOT / "README.md").read_text()
  doc = (ROOT / "experiments" / "configs" / "quickstart.py").read_text()
  results = (ROOT / "RESULTS.md").read_text()
  epe, base = re.search(r"test mean EPE (\d+\.\d) mm against a mean-pose baseline of (\d+\.\d) mm",
                        readme).groups()
  assert re.search(rf"test mean EPE {epe} mm, .* against {base} mm for the mean-pose", doc,
                   re.S), (epe, base)
  row = next(line for line in results.splitlines() if line.startswith("| quickstart (builder 1.3.0"))
  cells = [c.strip() for c in row.split("|")]
  assert cells[3] == epe and cells[6] == base, cells
