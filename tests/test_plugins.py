"""The plugin manager, registry errors, config search path and `sparsey-plugins`.

Third-party plugins here are real installed distributions as far as Python can tell: a module
plus a `*.dist-info` folder with an `entry_points.txt` on sys.path, which is exactly what pip
leaves behind. The full pip-into-a-venv round trip is in test_plugins_example.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException

from sparsey_hydra import builtins, plugins, plugins_cli
from sparsey_hydra.cli import config_dir
from sparsey_hydra.errors import SparseyConfigError
from sparsey_hydra.plugins import KINDS, builtin_label, get_registry

BUILTIN = builtin_label()


@pytest.fixture(autouse=True)
def fresh_registry():
    """Every test builds the process-wide registry anew, and leaves no plugin behind."""
    plugins._PM = plugins._REGISTRY = None
    yield
    plugins._PM = plugins._REGISTRY = None


def install_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, module: str,
                 source: str, version: str = "1.0") -> None:
    """Make `dist` look pip-installed: its module and dist-info (entry point) on sys.path."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[sparsey_hydra]\nmain = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)


TRANSFORM_PLUGIN = """
    from pydantic import BaseModel
    from sparsey_hydra.hookspecs import hookimpl
    from sparsey_hydra.plugins import Component

    class InvertParams(BaseModel):
        model_config = {"extra": "forbid"}
        gain: float = 1.0

    @hookimpl
    def sparsey_register_transforms():
        return [Component("{name}", lambda p: (lambda img: p.gain - img), InvertParams,
                          "1 - image")]
"""


# -- built-ins through the same hooks ---------------------------------------------------------


def test_builtins_are_a_plugin_registered_through_the_hooks() -> None:
    registry = get_registry()
    assert registry.pm.get_plugin(BUILTIN) is builtins
    assert registry.plugin_names()[0] == BUILTIN
    for kind in KINDS:
        assert registry.components[kind], f"no built-in {kind}"
        assert {c.source for c in registry.components[kind].values()} == {BUILTIN}
    assert registry.get("layer", "sparsey").params.__name__ == "SparseyLayerParams"


def test_third_party_plugin_is_loaded_from_its_entry_point(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-invert", "sparsey_invert",
                 TRANSFORM_PLUGIN.replace("{name}", "invert"), version="2.3")
    registry = get_registry()
    comp = registry.get("transform", "invert")
    assert comp.source == "sparsey-invert 2.3"
    assert registry.plugin_names() == [BUILTIN, "sparsey-invert 2.3"]
    # Its own pydantic model validates its parameters, with the key in the message.
    assert registry.build_params("transform", "invert", {"gain": 2}, key="t").gain == 2.0
    with pytest.raises(SparseyConfigError, match=r"^t\.gain: .*\(got 'x'\)"):
        registry.build_params("transform", "invert", {"gain": "x"}, key="t")


# -- errors -----------------------------------------------------------------------------------


def test_plugin_registering_an_existing_name_is_refused_naming_both(tmp_path,
                                                                    monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-clash", "sparsey_clash",
                 TRANSFORM_PLUGIN.replace("{name}", "binarize"))
    with pytest.raises(SparseyConfigError) as err:
        get_registry()
    msg = str(err.value)
    assert "transform 'binarize' is registered twice" in msg
    assert f"'{BUILTIN}'" in msg and "'sparsey-clash 1.0'" in msg
    assert "\n" not in msg


def test_two_plugins_with_one_name_are_both_named(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-one", "sparsey_one",
                 TRANSFORM_PLUGIN.replace("{name}", "same"))
    install_fake(tmp_path, monkeypatch, "sparsey-two", "sparsey_two",
                 TRANSFORM_PLUGIN.replace("{name}", "same"))
    with pytest.raises(SparseyConfigError, match="transform 'same' is registered twice") as err:
        get_registry()
    assert "sparsey-one 1.0" in str(err.value) and "sparsey-two 1.0" in str(err.value)


def test_plugin_that_fails_to_import_is_named_with_its_error(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-broken", "sparsey_broken",
                 "import a_module_that_does_not_exist\n")
    with pytest.raises(SparseyConfigError) as err:
        get_registry()
    msg = str(err.value)
    assert msg.startswith("plugin 'sparsey-broken 1.0' failed to import: ModuleNotFoundError")
    assert "a_module_that_does_not_exist" in msg and "pip uninstall sparsey-broken" in msg


def test_hook_returning_something_else_is_named(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-sloppy", "sparsey_sloppy", """
        from sparsey_hydra.hookspecs import hookimpl

        @hookimpl
        def sparsey_register_metrics():
            return [("my_metric", object)]
    """)
    with pytest.raises(SparseyConfigError,
                       match=r"plugin 'sparsey-sloppy 1.0': sparsey_register_metrics returned "
                             r"\('my_metric'.*return a list of sparsey_hydra.plugins.Component"):
        get_registry()


def test_misspelled_hook_is_named(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-typo", "sparsey_typo", """
        from sparsey_hydra.hookspecs import hookimpl

        @hookimpl
        def sparsey_register_layer():
            return []
    """)
    with pytest.raises(SparseyConfigError,
                       match=r"plugin 'sparsey-typo 1.0': .*sparsey_register_layer.*the hooks are"):
        get_registry()


def test_unknown_name_lists_known_names_and_loaded_plugins(tmp_path, monkeypatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-invert", "sparsey_invert",
                 TRANSFORM_PLUGIN.replace("{name}", "invert"))
    registry = get_registry()
    with pytest.raises(SparseyConfigError) as err:
        registry.get("transform", "blur", key="preprocessing.transforms.0.name")
    msg = str(err.value)
    assert msg.startswith("preprocessing.transforms.0.name: unknown transform 'blur'; "
                          "known transforms: binarize, invert, resize, skeletonize")
    assert f"plugins loaded: {BUILTIN}, sparsey-invert 1.0" in msg


def test_unknown_dataset_type_names_the_type_key() -> None:
    with pytest.raises(SparseyConfigError, match=r"^dataset\.type: unknown dataset 'nope'"):
        get_registry().build_params("dataset", "nope", {}, key="dataset")


# -- config directories and Hydra's search path -----------------------------------------------


CONFIG_PLUGIN = """
    from pathlib import Path
    from sparsey_hydra.hookspecs import hookimpl

    @hookimpl
    def sparsey_config_dirs():
        return [str(Path(__file__).parent / "sparsey_netplug_conf")]
"""


def install_config_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-netplug", "sparsey_netplug", CONFIG_PLUGIN)
    net = tmp_path / "site" / "sparsey_netplug_conf" / "network"
    net.mkdir(parents=True)
    (net / "plug_net.yaml").write_text(
        "name: plug_net\nlayers:\n  - name: sparsey\n    num_macs: 1\n    num_cms_per_mac: 2\n"
        "    num_neurons_per_cm: 2\n    receptive_field_radius: 2.0\n")


def test_plugin_config_dir_joins_the_search_path_of_sparsey_only(tmp_path, monkeypatch) -> None:
    install_config_plugin(tmp_path, monkeypatch)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["network=plug_net"])
    assert cfg.network.name == "plug_net" and cfg.network.layers[0].num_cms_per_mac == 2
    # Another Hydra app in the same environment does not see sparsey plugins' configs.
    other = tmp_path / "other_app"
    (other / "network").mkdir(parents=True)
    (other / "network" / "own.yaml").write_text("name: own\n")
    (other / "config.yaml").write_text("defaults:\n  - network: own\n")
    with initialize_config_dir(config_dir=str(other), version_base="1.3"):
        assert compose(config_name="config").network.name == "own"
        with pytest.raises(MissingConfigException):
            compose(config_name="config", overrides=["network=plug_net"])


def test_unknown_config_option_is_one_line_naming_group_and_options(tmp_path,
                                                                    monkeypatch) -> None:
    install_config_plugin(tmp_path, monkeypatch)
    primary = config_dir()
    plugins.check_group_overrides(["network=plug_net", "+experiment=train", "seed=3"], primary)
    plugins.check_group_overrides(["network=mnist_small,plug_net"], primary)
    with pytest.raises(SparseyConfigError) as err:
        plugins.check_group_overrides(["+experiment=train", "network=mnist_small,nope"], primary)
    msg = str(err.value)
    assert msg.startswith("network: unknown option 'nope'; known: ")
    assert "mnist_small" in msg and "plug_net" in msg
    assert "config dirs from plugins: sparsey-netplug 1.0" in msg
    with pytest.raises(SparseyConfigError, match="^experiment: unknown option 'tain'"):
        plugins.check_group_overrides(["+experiment=tain"], primary)


def test_cli_reports_unknown_option_with_exit_code_2(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sparsey_hydra.cli", "+experiment=train",
                           "network=no_such_net"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: network: unknown option 'no_such_net'")
    assert not (tmp_path / "sparsey.db").exists()


# -- sparsey-plugins --------------------------------------------------------------------------


def test_listing_shows_builtins_with_their_package() -> None:
    exe = Path(sys.executable).with_name("sparsey-plugins")
    assert exe.exists(), "reinstall the project (pip install -e .) to get sparsey-plugins"
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for section in ("layers", "metrics", "transforms", "datasets", "stores"):
        assert f"\n{section}\n" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for name in ("sparsey", "num_activations", "binarize", "digits", "sqlite"):
        assert BUILTIN in rows[name]


def test_listing_shows_a_plugin_its_package_and_config_options(tmp_path, monkeypatch,
                                                               capsys) -> None:
    install_config_plugin(tmp_path, monkeypatch)
    install_fake(tmp_path, monkeypatch, "sparsey-invert", "sparsey_invert",
                 TRANSFORM_PLUGIN.replace("{name}", "invert"))
    assert plugins_cli.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"name": "invert", "package": "sparsey-invert 1.0", "description": "1 - image"} \
        in data["components"]["transform"]
    assert data["config_dirs"][0]["package"] == "sparsey-netplug 1.0"
    assert data["config_dirs"][0]["options"] == {"network": ["plug_net"]}
    plugins._PM = None
    assert plugins_cli.main([]) == 0
    text = capsys.readouterr().out
    assert "sparsey-invert 1.0" in text and "sparsey-netplug 1.0: network=plug_net" in text


def test_listing_still_lists_and_fails_when_a_plugin_is_broken(tmp_path, monkeypatch,
                                                               capsys) -> None:
    install_fake(tmp_path, monkeypatch, "sparsey-broken", "sparsey_broken",
                 "raise RuntimeError('boom')\n")
    assert plugins_cli.main([]) == 2
    out, err = capsys.readouterr()
    assert "binarize" in out and "sparsey-broken 1.0: RuntimeError: boom" in out
    assert err.startswith("error: plugin 'sparsey-broken 1.0' failed to import")
