"EEG pipeline: EDF reading (modal rate), zero-phase band-pass, segmenting, z-scoring, simulator, and clear errors."
import numpy as np
import pytest, torch
from pyedflib import highlevel
from interpwb.sae.eeg import EEGRecording, read_edf, write_edf, bandpass, segment, zscore_segments, eeg_segments
from interpwb.sae.eeg import sample_edf_path, simulate_eeg, eeg_figure

FS = 128

def test_bandpass_keeps_the_band_and_removes_drift_and_line_noise():
    t = np.arange(20 * FS) / FS
    x = np.stack([np.sin(2*np.pi*10*t), np.sin(2*np.pi*0.05*t), np.sin(2*np.pi*55*t)])
    y = bandpass(x, FS)[:, 3*FS:-3*FS]; x = x[:, 3*FS:-3*FS]
    assert np.abs(y[0] - x[0]).max() < 0.02  # 10 Hz passes with no phase shift (zero-phase)
    assert y[1].std() < 0.02 * x[1].std() and y[2].std() < 0.02 * x[2].std()

def test_pipeline_shape_order_and_zscore():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 10 * FS)) * np.array([[1.], [50.], [1000.]]) + 7
    out = eeg_segments(x, fs=FS)
    assert out.shape == (10, 3 * FS) and out.dtype == torch.float32
    seg = out.view(10, 3, FS)  # rows flatten channel-major: channel 0's samples first
    assert torch.allclose(seg.mean(-1), torch.zeros(10, 3), atol=1e-4)
    assert torch.allclose(seg.std(-1, unbiased=False), torch.ones(10, 3), atol=1e-4)
    ref = zscore_segments(segment(bandpass(x, FS), FS))
    assert np.allclose(seg.numpy(), ref, atol=1e-5)
    assert eeg_segments(x, fs=FS, stride=0.5).shape == (19, 3 * FS)

def test_edf_keeps_channels_at_the_modal_rate(tmp_path):
    sim = simulate_eeg(n_channels=4, seconds=20, seed=3)
    hdr = highlevel.make_signal_headers(sim.channels + ["SpO2", "Resp"], sample_frequency=FS, physical_min=-1000, physical_max=1000)
    hdr[-2]["sample_frequency"] = 1; hdr[-1]["sample_frequency"] = 32
    highlevel.write_edf(str(tmp_path/"rec.edf"), list(sim.data) + [np.zeros(20), np.zeros(20 * 32)], hdr)
    rec = read_edf(tmp_path/"rec.edf")
    assert rec.fs == FS and rec.channels == sim.channels and rec.meta["dropped"] == {"SpO2": 1.0, "Resp": 32.0}
    assert np.abs(rec.data - sim.data).max() < 0.05  # 16-bit quantisation of a ±1000 µV range
    write_edf(sim, tmp_path/"sim.edf")
    assert torch.allclose(eeg_segments(tmp_path/"sim.edf"), eeg_segments(sim), atol=1e-2)

def test_the_shipped_sample_is_read_from_the_installed_pyedflib():
    path = sample_edf_path()
    assert "pyedflib" in str(path) and path.exists()
    rec = read_edf(path)
    assert rec.channels == ["Fp1"] and rec.fs == 128 and rec.duration > 600
    assert eeg_segments(rec).shape == (int(rec.duration), 128)

def test_simulator_is_seeded_and_has_its_alpha_peak_and_blinks():
    from scipy.signal import welch
    a, b = simulate_eeg(6, 60, seed=5), simulate_eeg(6, 60, seed=5)
    assert np.array_equal(a.data, b.data) and not np.array_equal(a.data, simulate_eeg(6, 60, seed=6).data)
    o = [i for i, c in enumerate(a.channels) if c.startswith("O")][0]
    f, p = welch(a.data[o], a.fs, nperseg=512)
    band = (f > 5) & (f < 15)
    assert abs(f[band][p[band].argmax()] - a.meta["alpha_hz"]) < 0.5
    assert a.meta["events"]["blink"] and a.data[0].max() > 3 * np.median(np.abs(a.data[0]))
    assert len(eeg_figure(a, 0, 5).data) == 6

@pytest.mark.parametrize("x, fs, match", [
    (np.zeros(500), FS, r"x\[None\]"),
    (np.zeros((2, 3, 500)), FS, r"\[channels, samples\]"),
    (np.zeros((500, 4)), FS, "pass x.T"),
    (np.zeros((2, 500)), -1, "positive"),
    (np.zeros((2, 500)), None, "sampling rate"),
    (np.random.randn(2, 100), FS, "too short"),
])
def test_bad_arrays_get_clear_errors(x, fs, match):
    with pytest.raises(ValueError, match=match): eeg_segments(x, fs=fs)

def test_non_finite_values_name_the_channel_and_time():
    x = np.random.randn(3, 5 * FS); x[2, 300] = np.inf
    with pytest.raises(ValueError, match=r"'C3' has 1 non-finite .* sample 300 \(2.34 s\)"):
        eeg_segments(x, fs=FS, channels=["Fp1", "Cz", "C3"])

def test_bad_files_and_settings(tmp_path):
    with pytest.raises(FileNotFoundError): read_edf(tmp_path/"missing.edf")
    (tmp_path/"junk.edf").write_bytes(b"0" * 600)
    with pytest.raises(ValueError, match="not a readable EDF"): read_edf(tmp_path/"junk.edf")
    with pytest.raises(KeyError, match="Unknown EDF channel"): read_edf(sample_edf_path(), channels=["Oz"])
    with pytest.raises(ValueError, match="Nyquist"): eeg_segments(np.random.randn(2, 10 * 64), fs=64)
    with pytest.raises(ValueError, match="channel names"): eeg_segments(np.random.randn(2, 1000), fs=FS, channels=["a"])
