"""The house rules, checked on the generated package: the layout is the map (a notebook per module, at the mirrored path),
layers never point up (no import cycle, counting imports inside functions; each package imports only the layers below
it), methods are added with `@patch` (never `Class.name = function`), nbdev's `__all__` is the only one, and no module is
over 400 lines."""
import ast, json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/"interpwb"
MODULES = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PKG.rglob("*.py")) if p.name != "_modidx.py"}

# What each part of the package may import (besides itself): the architecture, bottom to top.
LAYERS = {
    "core": [], "textstats": [], "ui": [],
    "models": ["core"], "scoring": ["core", "models", "plain", "generation"], "testing": ["core", "models"],
    "plain": ["core", "models"], "generation": ["core", "models", "plain"], "activations": ["core", "models", "plain"],
    "steering": ["core", "models", "plain", "generation", "activations", "scoring", "textstats", "ui"],
    "sae": ["core", "models", "activations", "ui"],
    "rl": ["core", "models", "scoring", "textstats"],
    "model_diff": ["core", "models", "activations", "sae", "ui"],
    "simulators": ["core", "models", "scoring", "ui"],
    "app": ["core", "models", "plain", "generation", "activations", "scoring", "textstats", "ui", "steering", "sae", "rl", "model_diff", "simulators"],
}
WIDGET_MODULES = re.compile(r"^interpwb\.(ui|app\..*|\w+\.panel)$")  # the only places ipywidgets may be imported

def part(mod:str) -> str: return mod.split(".")[1] if mod.count(".") else ""

def imports(mod:str, path:Path) -> set[str]:
    "Every interpwb module `mod` imports, anywhere in the file (inside functions too), resolved to module names."
    tree, out = ast.parse(path.read_text()), set()
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split("."); anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else: continue
        out |= {n for n in names if n in MODULES and n != mod}
    return out

GRAPH = {m: imports(m, p) for m, p in MODULES.items()}

def test_the_package_map_lists_every_part():
    assert {part(m) for m in MODULES if m != "interpwb"} == set(LAYERS)

def test_no_import_cycle_counting_imports_inside_functions():
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == "open": pytest.fail("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state: visit(n)
        state[m] = "done"; stack.pop()
    for m in MODULES:
        if m not in state: visit(m)

@pytest.mark.parametrize("mod", sorted(MODULES))
def test_layers_never_point_up(mod):
    if mod == "interpwb": return
    allowed = set(LAYERS[part(mod)]) | {part(mod)}
    bad = sorted(n for n in GRAPH[mod] if n != "interpwb" and part(n) not in allowed)
    assert not bad, f"{mod} imports {bad}; {part(mod)} may only use {sorted(allowed)}"

@pytest.mark.parametrize("mod", sorted(MODULES))
def test_ipywidgets_only_in_panels_ui_and_app(mod):
    text = MODULES[mod].read_text()
    if re.search(r"^\s*(import ipywidgets|from ipywidgets)", text, re.M): assert WIDGET_MODULES.match(mod), mod

@pytest.mark.parametrize("mod", sorted(MODULES))
def test_methods_are_patched_not_assigned(mod):
    tree = ast.parse(MODULES[mod].read_text())
    classes = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id[:1].isupper()}
    for node in tree.body:   # module level: `Cls.name = fn` / `Cls.a, Cls.b = f, g`, and setattr(Cls, ...)
        targets = []
        if isinstance(node, ast.Assign):
            for t in node.targets: targets += t.elts if isinstance(t, ast.Tuple) else [t]
        bad = [ast.unparse(t) for t in targets if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in classes]
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setattr"
                 and n.args and isinstance(n.args[0], ast.Name) and n.args[0].id in classes]
        assert not bad and not calls, f"{mod}:{node.lineno} attaches {bad or ast.unparse(calls[0])} by assignment; use fastcore's @patch"

@pytest.mark.parametrize("mod", sorted(MODULES))
def test_modules_are_small_and_have_only_nbdevs_all(mod):
    text = MODULES[mod].read_text()
    assert len(text.splitlines()) <= 400, f"{mod} has {len(text.splitlines())} lines (over 400): split it by idea"
    alls = re.findall(r"^__all__\s*=", text, re.M)
    assert len(alls) <= 1 and (not alls or "# %% auto" in text), f"{mod} has a hand-written __all__"

def _notebook_of(path:Path) -> Path:
    m = re.search(r"File to edit: (\S+\.ipynb)", path.read_text()[:600])
    return (path.parent/m.group(1)).resolve() if m else None

@pytest.mark.parametrize("mod", sorted(m for m in MODULES if not MODULES[m].name == "__init__.py"))
def test_every_module_has_its_notebook_at_the_mirrored_path(mod):
    nb = _notebook_of(MODULES[mod])
    assert nb is not None and nb.exists(), f"{mod} is not generated from a notebook"
    rel = nb.relative_to(ROOT/"nbs")
    want = mod.split(".")[1:]
    assert list(rel.parent.parts) == want[:-1], f"{mod} comes from nbs/{rel}: expected the folder nbs/{'/'.join(want[:-1])}"
    assert re.sub(r"^\d+_", "", rel.stem) == want[-1], f"{mod} comes from nbs/{rel}: its notebook should be named after it"

def test_every_notebook_outside_tutorials_exports_its_mirrored_module():
    for nb in sorted((ROOT/"nbs").rglob("*.ipynb")):
        rel = nb.relative_to(ROOT/"nbs")
        if rel.parts[0] == "tutorials" or rel.name == "index.ipynb" or ".ipynb_checkpoints" in rel.parts: continue
        cells = json.loads(nb.read_text())["cells"]
        exp = next((m.group(1) for c in cells for m in [re.search(r"^#\|\s*default_exp\s+(\S+)", "".join(c["source"]), re.M)] if m), None)
        assert exp == ".".join(list(rel.parent.parts) + [re.sub(r"^\d+_", "", rel.stem)]), f"nbs/{rel} exports {exp}"
        title = next(c for c in cells if c["cell_type"] == "markdown")["source"]
        title = "".join(title).split("\n")
        assert title[0].startswith("# ") and len(title) == 2 and title[1].startswith("> "), f"nbs/{rel}: title + a one-line > summary"

@pytest.mark.parametrize("mod", sorted(MODULES))
def test_patched_methods_live_in_their_class_module(mod):
    # a method @patch-ed from another module would be missing until that module happens to be imported
    tree = ast.parse(MODULES[mod].read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for f in tree.body:
        if isinstance(f, ast.FunctionDef) and any("patch" in ast.unparse(d) for d in f.decorator_list):
            ann = f.args.args[0].annotation
            assert ann is not None and ast.unparse(ann) in defined, f"{mod}.{f.name} patches {ast.unparse(ann) if ann else '?'}, defined elsewhere"

@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m != "interpwb"))
def test_every_public_name_has_its_own_one_line_docstring(mod):
    import importlib, inspect
    m = importlib.import_module(mod)
    for name in getattr(m, "__all__", []):
        obj = getattr(m, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
        doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
        assert doc and doc.strip(), f"{mod}.{name} has no docstring of its own"
