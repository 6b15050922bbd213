"""The README's Python example runs as written, and every shape its comments state is the shape the
variable really has (the example once called backward after a partial forward pass and crashed)."""
import re

from helpers import REPO

README = REPO / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_example_runs_and_its_commented_shapes_are_true():
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    for code in blocks:
        namespace = {}
        exec(compile(code, str(README), "exec"), namespace)
        stated = re.findall(r"^(\w+) = .*#[^(\n]*(\([\d, ]+\))", code, flags=re.M)
        assert stated, "the example states no shapes to check"
        for name, shape in stated:
            assert namespace[name].shape == tuple(int(n) for n in shape.strip("()").split(",")), name
