"""Developer sessions: tests, lint, bench. They reuse the active environment (torch is big)."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """The test suite (start services first: bash .ci/services.sh)."""
    session.run("pytest", "-q", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff over the package, its Hydra plugins, tests, benchmarks, plugins and examples."""
    session.run("ruff", "check", "sparsey_hydra", "hydra_plugins", "tests", "benchmarks", "plugins",
                "examples", "noxfile.py")


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """Throughput and memory figures (prints them and writes benchmarks/results.json)."""
    session.run("python", "benchmarks/bench_sparsey.py", *session.posargs)
