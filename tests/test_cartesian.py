"Property tests of the Cartesian frame / object algebra, each checked against a brute-force reading of the definition."
import itertools
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st, HealthCheck
from interpwb.simulators.cartesian import CartesianFrame, CartesianObject, subsets_of, tables_isomorphic

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

@st.composite
def frames(draw, max_a=3, max_e=3, max_w=4):
    a, e, w = draw(st.integers(1, max_a)), draw(st.integers(1, max_e)), draw(st.integers(1, max_w))
    cells = draw(st.lists(st.integers(0, w - 1), min_size=a * e, max_size=a * e))
    return CartesianFrame(np.array(cells).reshape(a, e), n_worlds=w)

@st.composite
def frame_pairs(draw):
    w = draw(st.integers(1, 4))
    out = []
    for _ in range(2):
        a, e = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        cells = draw(st.lists(st.integers(0, w - 1), min_size=a * e, max_size=a * e))
        out.append(CartesianFrame(np.array(cells).reshape(a, e), n_worlds=w))
    return out

@st.composite
def objects(draw, max_axes=3, max_opts=3, max_w=4):
    n = draw(st.integers(1, max_axes))
    shape = [draw(st.integers(1, max_opts)) for _ in range(n)]
    w = draw(st.integers(1, max_w))
    size = int(np.prod(shape))
    cells = draw(st.lists(st.integers(0, w - 1), min_size=size, max_size=size))
    return CartesianObject(np.array(cells).reshape(shape), n_worlds=w)

# ---- brute force, straight from the definitions ----
def rows(f): return range(f.table.shape[0])
def cols(f): return range(f.table.shape[1])
def ensure_bf(f):
    return {S for S in subsets_of(f.n_worlds) if any(all(f.table[a, e] in S for e in cols(f)) for a in rows(f))}
def prevent_bf(f):
    return {S for S in subsets_of(f.n_worlds) if any(all(f.table[a, e] not in S for e in cols(f)) for a in rows(f))}
def obs_bf(f):
    t = f.table
    def cond(S, a, a0, a1):
        return all((t[a, e] == t[a0, e]) if t[a, e] in S else (t[a, e] == t[a1, e]) for e in cols(f))
    return {S for S in subsets_of(f.n_worlds)
            if all(any(cond(S, a, a0, a1) for a in rows(f)) for a0 in rows(f) for a1 in rows(f))}
def iso_bf(a, b):
    "Frames: some row and column permutation maps a onto b."
    if a.shape != b.shape: return False
    return any((a[np.ix_(p, q)] == b).all() for p in itertools.permutations(range(a.shape[0]))
               for q in itertools.permutations(range(a.shape[1])))

# ---- the families agree with brute force ----
@SETTINGS
@given(frames())
def test_ensure_prevent_obs_match_brute_force(f):
    assert f.ensurables() == ensure_bf(f)
    assert f.preventables() == prevent_bf(f)
    assert f.controllables() == ensure_bf(f) & prevent_bf(f)
    assert f.observables() == obs_bf(f)

@SETTINGS
@given(frames(), st.randoms(use_true_random=False))
def test_isomorphism_matches_brute_force(f, rnd):
    t = f.table
    p, q = list(range(t.shape[0])), list(range(t.shape[1])); rnd.shuffle(p); rnd.shuffle(q)
    shuffled = t[np.ix_(p, q)]
    assert tables_isomorphic(t, shuffled, permute_axes=False)
    other = shuffled.copy(); other.flat[rnd.randrange(other.size)] = rnd.randrange(f.n_worlds)
    assert tables_isomorphic(t, other, permute_axes=False) == iso_bf(t, other)

# ---- dual and collapse ----
@SETTINGS
@given(frames())
def test_double_dual_is_identity(f):
    assert f.dual().dual() == f

@SETTINGS
@given(frames())
def test_collapse_is_idempotent_and_equivalent(f):
    c = f.collapse()
    assert c.collapse() == c and f.equivalent(c) and c.equivalent(f)
    assert len({r.tobytes() for r in c.table}) == c.table.shape[0]           # no duplicate rows left
    assert len({r.tobytes() for r in c.table.T}) == c.table.shape[1]         # no duplicate columns left
    assert {tuple(r) for r in f.table[:, [f.env.index(e) for e in c.env]]} == {tuple(r) for r in c.table}

@SETTINGS
@given(frames())
def test_dual_swaps_ensure_and_prevent_consistently(f):
    # a set the agent can ensure can never be prevented by the environment (they would meet at a.e)
    assert not (f.ensurables() & f.dual().preventables())
    assert not (f.preventables() & f.dual().ensurables())

# ---- Ctrl and Obs ----
@SETTINGS
@given(frames())
def test_ctrl_and_obs_are_disjoint(f):   # E is non-empty in every drawn frame
    assert not (f.controllables() & f.observables())

@SETTINGS
@given(frames())
def test_obs_closed_under_boolean_operations(f):
    obs, W = f.observables(), frozenset(range(f.n_worlds))
    assert frozenset() in obs and W in obs
    for s in obs:
        assert W - s in obs
        for t in obs: assert s | t in obs and s & t in obs

# ---- sum and product ----
def sum_bf(c, d):
    A = [("L", a) for a in rows(c)] + [("R", b) for b in rows(d)]
    E = list(itertools.product(cols(c), cols(d)))
    return np.array([[c.table[x[1], e] if x[0] == "L" else d.table[x[1], f] for (e, f) in E] for x in A])

def product_bf(c, d):
    A = list(itertools.product(rows(c), rows(d)))
    E = [("L", e) for e in cols(c)] + [("R", f) for f in cols(d)]
    return np.array([[c.table[a, y[1]] if y[0] == "L" else d.table[b, y[1]] for y in E] for (a, b) in A])

@SETTINGS
@given(frame_pairs())
def test_sum_and_product_tables_match_definition(pair):
    c, d = pair
    assert (c.sum(d).table == sum_bf(c, d)).all()
    assert (c.product(d).table == product_bf(c, d)).all()
    assert c.sum(d).dual().equivalent(c.dual().product(d.dual()))

@SETTINGS
@given(frame_pairs())
def test_ensure_prevent_under_sum_and_product(pair):
    c, d = pair
    s, p = c.sum(d), c.product(d)
    assert s.ensurables() == c.ensurables() | d.ensurables()
    assert s.preventables() == c.preventables() | d.preventables()
    assert p.ensurables() == c.ensurables() & d.ensurables()
    assert p.preventables() == c.preventables() & d.preventables()
    assert p.controllables() == c.controllables() & d.controllables()
    assert s.controllables() >= c.controllables() | d.controllables()

# ---- objects: externalising, bystanders, merge/split, fix, restrict ----
@SETTINGS
@given(objects(max_axes=2).filter(lambda o: o.ndim == 2))
def test_two_axis_frames_are_duals(o):
    assert o.frame(0).equivalent(o.frame(1).dual())
    assert o.frame(0) == o.frame(1).dual()

@SETTINGS
@given(objects(), st.integers(1, 3))
def test_adding_a_bystander_axis_changes_nothing(o, k):
    bigger = o.add_axis("bystander", [f"b{i}" for i in range(k)])
    assert o.add_axis("single", ["only"]).equivalent(o)
    assert bigger.equivalent(o)
    for i in range(o.ndim):
        assert bigger.frame(i).equivalent(o.frame(i))
        assert bigger.ensurables(i) == o.ensurables(i) and bigger.observables(i) == o.observables(i)

@SETTINGS
@given(objects(max_axes=3).filter(lambda o: o.ndim == 3))
def test_merge_split_roundtrip_and_superagent(o):
    assume(o.shape[0] * o.shape[1] <= 6)   # the brute-force isomorphism check permutes the merged axis: 9! is too many
    m = o.merge([0, 1])
    back = m.split(0, [o.shape[0], o.shape[1]], ["x0", "x1"])
    assert (back.table == o.table).all() and back.options == o.options
    assert m.frame(1).equivalent(o.frame(2))                 # the third axis sees the same world
    assert m.ensurables(0) >= o.ensurables(0) | o.ensurables(1)   # the merged agent can ensure what either could

@SETTINGS
@given(objects(max_axes=3).filter(lambda o: o.ndim >= 2), st.data())
def test_fix_and_restrict_move_ensure_the_right_way(o, data):
    j = data.draw(st.integers(1, o.ndim - 1)); opt = data.draw(st.integers(0, o.shape[j] - 1))
    assert o.fix(j, opt).ensurables(0) >= o.ensurables(0)        # a fixed environment is easier to steer
    keep = data.draw(st.lists(st.integers(0, o.shape[0] - 1), min_size=1, max_size=o.shape[0], unique=True))
    assert o.restrict(0, keep).ensurables(0) <= o.ensurables(0)  # fewer options ensure less

# ---- closed form: identity evaluation ----
@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=3).filter(lambda s: np.prod(s) <= 12), st.data())
def test_identity_evaluation_closed_form(shape, data):
    axes = {f"x{i}": [f"o{k}" for k in range(s)] for i, s in enumerate(shape)}
    o = CartesianObject.identity(axes)
    i = data.draw(st.integers(0, len(shape) - 1))
    W = frozenset(range(o.n_worlds))
    slices = [o.worlds_where(lambda w, a=a: w[i] == f"o{a}") for a in range(shape[i])]
    assert o.ensurables(i) == {S for S in subsets_of(o.n_worlds) if any(sl <= S for sl in slices)}
    ctrl = o.controllables(i)
    for j, s in enumerate(shape):              # cylinders {w : w_j in T}
        for r in range(0, s + 1):
            for T in itertools.combinations([f"o{k}" for k in range(s)], r):
                cyl = o.worlds_where(lambda w, j=j, T=T: w[j] in T)
                nontrivial = 0 < len(T) < s
                assert (cyl in ctrl) == (j == i and nontrivial)
    assert o.observables(i) == ({frozenset(), W} if shape[i] >= 2 else set(subsets_of(o.n_worlds)))

# ---- bad input ----
def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="3 options on this axis but 2 labels"):
        CartesianObject(np.zeros((2, 3), int), ["A", "B"], [["x", "y"], ["p", "q"]])
    with pytest.raises(ValueError, match="2 axes"):
        CartesianObject(np.zeros((2, 3), int), ["A"])
    with pytest.raises(ValueError, match="n_worlds=2"):
        CartesianFrame([[0, 5]], n_worlds=2)
    with pytest.raises(ValueError, match="same worlds"):
        CartesianFrame([[0]], n_worlds=1).sum(CartesianFrame([[0]], n_worlds=2))
    with pytest.raises(KeyError, match="Did you mean 'Alice'"):
        CartesianObject.identity({"Alice": ["a"], "Bob": ["b"]}).frame("Alcie")
    with pytest.raises(ValueError, match="at most 16 worlds"):
        subsets_of(20)
