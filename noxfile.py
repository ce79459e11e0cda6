"""Development sessions: tests, lint, type check and docs."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common mistakes with ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package and examples in strict mode."""
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation, treating warnings as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )


# Peers of the benchmark, pinned to the versions the published figures used.
# They are benchmark-only: the package itself never depends on them.
BENCH_PEERS = [
    "huey==3.5.4",
    "persist-queue==1.1.0",
    "procrastinate==3.10.0",
    "psycopg[binary]==3.3.9",
    "saq[redis]==0.26.4",
    "pyinstrument==5.1.3",
]


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark suite against its peers; pass -- --quick for a smoke test."""
    session.install(".", *BENCH_PEERS)
    session.run("python", "-m", "bench", *session.posargs)
