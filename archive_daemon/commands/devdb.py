"""`devdb start|stop|status|url`: the embedded development database under ./var."""

from __future__ import annotations

from ..config import Config
from ..devdb import DevDB
from . import UsageError


def cmd_devdb(config: Config, args) -> int:
    devdb = DevDB()
    if args.action == "start":
        devdb.start()
        print(f"embedded database {devdb.status()}")
    elif args.action == "stop":
        print("embedded database stopped" if devdb.stop() else "embedded database was not running")
    elif args.action == "status":
        print(devdb.status())
        return 0 if devdb.running() else 3
    else:
        url = devdb.url()
        if url is None:
            raise UsageError("the embedded database is not initialised: run `archive-daemon devdb start`")
        print(url)
    return 0
