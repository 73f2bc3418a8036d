"The README's two commands exist and CI calls exactly the test command."
import re
from pathlib import Path
ROOT = Path(__file__).parents[1]

def readme_commands():
    text = (ROOT/"README.md").read_text()
    return re.findall(r"^\s*(make \w[\w-]*)\s*$", text, flags=re.M)

def test_readme_has_a_run_and_a_test_command():
    cmds = readme_commands()
    assert "make run" in cmds and "make test" in cmds, cmds

def test_ci_runs_the_readme_test_command():
    ci = (ROOT/".ci"/"run").read_text()
    assert re.search(r"^make test\s*$", ci, flags=re.M)

def test_notebooks_are_numbered_and_have_a_title_and_summary():
    import nbformat
    for nb_path in sorted((ROOT/"nbs").rglob("[0-9][0-9]_*.ipynb")):
        md = [c for c in nbformat.read(nb_path, as_version=4).cells if c.cell_type == "markdown"][0].source
        assert md.startswith("# ") and "\n> " in md, nb_path.name

def test_readme_is_generated_from_the_index_notebook():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_readme", ROOT/"scripts"/"make_readme.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    assert (ROOT/"README.md").read_text() == mod.readme_text(), "README.md is stale: run scripts/make_readme.py"
