"""handjax's modules import each other one way: no import circle, deferred imports included."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules() -> dict[str, str]:
  """{dotted module name: path} of every handjax module (packages by their __init__)."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, "handjax")):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[dotted.removesuffix(".__init__")] = path
  return out


def _import_graph() -> dict[str, set[str]]:
  """Module -> the handjax modules it imports anywhere in its file (function bodies too).

  ``from pkg import mod`` is an edge to ``pkg.mod`` (a module), not to the package: a package
  ``__init__`` re-exporting its modules is not a circle.
  """
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    deps = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                   else node.module for a in node.names]
      else:
        continue
      deps |= {t for t in targets if t in modules and t != name}
    graph[name] = deps
  return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import circle as [a, b, ..., a], or None (depth-first search, three colours)."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for dep in sorted(graph[node]):
      if state.get(dep) == 1:
        return path[path.index(dep):] + [dep]
      if dep not in state and (found := visit(dep)):
        return found
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return None


def test_cycle_finder_finds_a_known_circle():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _find_cycle(graph) == ["a", "b", "c", "a"]
  assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_handjax_has_no_import_circle():
  graph = _import_graph()
  # The circle of issue 19 (inference -> loop -> warm_start -> inference) is untied: the dataset
  # factory lives in datasets.py, which the loop and inference both import.
  assert "handjax.train.loop" not in graph["handjax.train.inference"]
  assert graph["handjax.train.warm_start"] >= {"handjax.train.inference"}
  assert {"handjax.train.datasets"} <= graph["handjax.train.inference"]
  assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))
