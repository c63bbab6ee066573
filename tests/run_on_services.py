"""Run pytest on PostgreSQL and Redis (DATABASE_URL, REDIS_URL), after checking both answer.

With CI=true an unreachable service fails the run; otherwise the pass is skipped with the
reason printed, so a laptop without the services still gets the embedded pass.
"""

import os
import sys

import dj_database_url
import psycopg2
import redis


def probe() -> list[str]:
    problems = []
    database_url = os.environ.get("DATABASE_URL", "")
    config = dj_database_url.parse(database_url) if database_url else {}
    if config.get("ENGINE") != "django.db.backends.postgresql":
        problems.append(f"DATABASE_URL is not a PostgreSQL URL: {database_url!r}")
    else:
        try:
            psycopg2.connect(
                dbname=config["NAME"],
                user=config["USER"],
                password=config["PASSWORD"],
                host=config["HOST"],
                port=config["PORT"] or 5432,
                connect_timeout=3,
            ).close()
        except psycopg2.Error as error:
            problems.append(f"PostgreSQL at {database_url} did not answer: {error}".strip())
    redis_url = os.environ.get("REDIS_URL", "")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except (redis.RedisError, ValueError) as error:
        problems.append(f"Redis at {redis_url!r} did not answer: {error}")
    return problems


def main() -> None:
    problems = probe()
    if problems:
        for problem in problems:
            print(f"services pass: {problem}", file=sys.stderr)
        if os.environ.get("CI", "").lower() == "true":
            print("services pass: FAILED (CI=true requires PostgreSQL and Redis)", file=sys.stderr)
            sys.exit(1)
        print("services pass: skipped (set CI=true to make this a failure)", file=sys.stderr)
        sys.exit(0)
    print("services pass: PostgreSQL and Redis answer; running the suite on them", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "pytest", *sys.argv[1:]])  # noqa: S606


if __name__ == "__main__":
    main()
