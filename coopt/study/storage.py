"""Optuna storage from the URL a user writes, and study names that stay inside ``mlruns/studies``.

Accepted: ``postgresql://`` (psycopg 3, or psycopg2 when only that is
installed), ``mysql://`` (PyMySQL), ``sqlite:///FILE``, ``grpc://HOST:PORT``
(Optuna's gRPC storage proxy), and a journal file (``journal:PATH`` or a path
ending in ``.journal``); no URL means the journal file in the study folder.
Every failure is one ``CooptError`` line naming the scheme and the fix.
Readers open storage with ``create=False``: nothing is created by looking.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from coopt.errors import CooptError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
LEASE_PREFIX = "coopt-lease."       # companion studies that hold a run's lease (coopt.study.storage_lease)
GRPC_READY_S = 6                    # how long a gRPC storage proxy may take to answer
FORMS = "postgresql://..., mysql://..., sqlite:///FILE, grpc://HOST:PORT, journal:PATH or PATH.journal"


class StorageError(CooptError):
    """A storage URL that cannot be used (unknown scheme, missing driver, unreachable server)."""


class DamagedStorage(StorageError):
    """A storage that is there but cannot be read back (a damaged journal line)."""


def check_study_name(name: str) -> str:
    """Letters, digits, ``-``, ``_`` and ``.`` (not first): a name is a folder under mlruns/studies.
    Names starting with ``coopt-lease.`` are the run leases' own studies, never a user's."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or len(name) > 128:
        raise CooptError(f"study name {name!r}", key="--study",
                         expected="letters, digits, '-', '_' and '.', starting with a letter or digit")
    if name.startswith(LEASE_PREFIX):
        raise CooptError(f"study name {name!r} is reserved for run leases", key="--study",
                         expected=f"a name not starting with {LEASE_PREFIX!r}")
    return name


def study_dir(name: str, root: str | Path | None = None) -> Path:
    """``<root>/studies/<name>`` for a checked name (never outside ``studies``)."""
    return Path(root or Path.cwd() / "mlruns") / "studies" / check_study_name(name)


def quiet_optuna():
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _driver(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL for a URL as users write it (the driver chosen from what is installed)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(f"storage {url!r} is not a URL or journal file", key="--storage", expected=FORMS)
    base, _, driver = scheme.partition("+")
    if base in ("postgresql", "postgres"):
        if driver:
            need = {"psycopg": "psycopg", "psycopg2": "psycopg2"}.get(driver, driver)
            if not _driver(need):
                raise StorageError(f"storage scheme {scheme}:// needs the {need} package, which is not installed",
                                   key="--storage", expected="pip install 'psycopg[binary]' (installed with coopt) "
                                                             "and a postgresql:// URL")
            return url if base == "postgresql" else f"postgresql+{driver}://{rest}"
        for mod in ("psycopg", "psycopg2"):
            if _driver(mod):
                return f"postgresql+{mod}://{rest}"
        raise StorageError("storage scheme postgresql:// needs a PostgreSQL driver, none is installed",
                           key="--storage", expected="pip install 'psycopg[binary]' (installed with coopt)")
    if base in ("mysql", "mariadb"):
        drv = driver or "pymysql"
        if not _driver({"mysqldb": "MySQLdb"}.get(drv, drv)):
            raise StorageError(f"storage scheme {scheme}:// needs the {drv} package, which is not installed",
                               key="--storage", expected=f"pip install {'mysqlclient' if drv == 'mysqldb' else drv}"
                                                         " (PyMySQL is installed with coopt: use mysql://)")
        return f"mysql+{drv}://{rest}"
    if base == "sqlite":
        return url
    raise StorageError(f"unknown storage scheme {scheme}://", key="--storage", expected=FORMS)


def describe(spec: str | None) -> str:
    """The storage without its password, for messages and the settings record."""
    if spec is None:
        return "journal file in the study folder"
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", spec)


def journal_path(spec: str | None, sdir: Path) -> Path | None:
    """The journal file a spec names (None for RDB and gRPC storage)."""
    if spec is None:
        return Path(sdir) / "optuna.journal"
    if spec.startswith("journal:"):
        return Path(spec.removeprefix("journal:")).expanduser()
    if "://" not in spec and spec.endswith(".journal"):
        return Path(spec).expanduser()
    return None


def open_storage(spec: str | None, sdir: Path, *, create: bool = True):
    """An Optuna storage for ``spec``; with ``create=False`` a missing store is an error, not created."""
    import optuna

    quiet_optuna()
    journal = journal_path(spec, sdir)
    if journal is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        if not create and not journal.is_file():
            raise StorageError(f"no study storage at {journal}", key="--storage",
                               expected="the --storage the study was run with")
        journal.parent.mkdir(parents=True, exist_ok=True)
        try:
            return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalFileOpenLock(str(journal))))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:    # a damaged line stops the replay
            raise DamagedStorage(f"the journal is damaged ({type(e).__name__}: {str(e)[:80]})", file=str(journal),
                               key="--storage", expected=f"`coopt doctor {Path(sdir).name} --repair` to keep the "
                                                         "operations before the damage") from None
    if grpc_address(spec) is not None:
        host, _, port = grpc_address(spec).partition(":")
        try:
            proxy = optuna.storages.GrpcStorageProxy(host=host or "localhost", port=int(port or 13000))
            proxy.wait_server_ready(timeout=GRPC_READY_S)
        except ValueError:
            raise StorageError(f"grpc storage {spec!r}", key="--storage", expected="grpc://HOST:PORT") from None
        except Exception as e:
            raise StorageError(f"no Optuna gRPC storage proxy answers at {spec} ({type(e).__name__})",
                               key="--storage", expected="a running `optuna grpc-proxy`/run_grpc_proxy_server"
                               ) from None
        return proxy
    url = normalize_url(spec)
    if url.startswith("sqlite:///") and not create:
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StorageError(f"no study storage at {path}", key="--storage",
                               expected="the --storage the study was run with")
    try:
        return optuna.storages.RDBStorage(url, skip_table_creation=not create,
                                          engine_kwargs={"pool_pre_ping": True})
    except ImportError as e:
        raise StorageError(f"storage {describe(spec)}: {e}", key="--storage",
                           expected="pip install 'psycopg[binary]' or pymysql (both installed with coopt)") from None
    except Exception as e:           # unreachable server, bad credentials, no such database
        raise StorageError(f"cannot open storage {describe(spec)}: {root_message(e)}", key="--storage",
                           expected="a reachable database the user may write to") from None


CONNECT_TIMEOUT_S = 5                # a database server that does not answer: refused well within 10 s


def root_message(e: BaseException) -> str:
    """The first line of the innermost cause (Optuna wraps a refused connection in a generic message)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def probe_storage(spec: str | None, sdir: Path) -> bool:
    """Check, within seconds, that the storage answers; True when it may hold studies (a journal file
    exists, a database has Optuna's tables, a gRPC proxy answers).  Creates nothing."""
    journal = journal_path(spec, sdir)
    if journal is not None:
        return journal.is_file()
    if grpc_address(spec) is not None:
        open_storage(spec, sdir)          # waits for the proxy (GRPC_READY_S), one line if it does not answer
        return True
    import sqlalchemy as sa

    url = normalize_url(spec)
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file() and _has_tables(sa.create_engine(url), spec)
    args = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sa.create_engine(url, connect_args=args)
    except Exception as e:
        raise StorageError(f"storage {describe(spec)}: {root_message(e)}", key="--storage", expected=FORMS) from None
    return _has_tables(engine, spec)


def _has_tables(engine, spec: str) -> bool:
    import sqlalchemy as sa

    try:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table("studies")
    except Exception as e:
        raise StorageError(f"cannot open storage {describe(spec)}: {root_message(e)}", key="--storage",
                           expected="a reachable database the user may write to") from None
    finally:
        engine.dispose()


def grpc_address(spec: str | None) -> str | None:
    """``HOST:PORT`` of a ``grpc://`` storage spec (None for any other storage)."""
    if spec is None or not spec.startswith("grpc://"):
        return None
    return spec.removeprefix("grpc://").rstrip("/")


def rdb_url(spec: str | None) -> str | None:
    """The SQLAlchemy URL of an RDB storage spec (None for journal files and gRPC)."""
    if spec is None or journal_path(spec, Path(".")) is not None or grpc_address(spec) is not None:
        return None
    return normalize_url(spec)
