# `make run` serves the API on http://127.0.0.1:8000/graphql/ ; `make test` runs every check.
# Both set up what they need first (virtualenv, packages, browser) and are safe to repeat.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# The development server runs in DEBUG (GraphiQL, introspection, readable errors).
RUN_ENV ?= DEBUG=$${DEBUG:-true}
STAMPS := .make

.PHONY: run worker test lint check-migrations check-schema schema pytest pytest-embedded \
	pytest-services browser pgbouncer psycopg3 vendor-graphiql web web-serve clean

# The server, and beside it the worker that delivers push notifications (db_worker); Ctrl-C
# stops both. Notifications queued while the worker is down wait in the database for it.
run: $(STAMPS)/venv
	$(RUN_ENV) $(PY) manage.py migrate --noinput
	$(RUN_ENV) $(PY) manage.py db_worker --no-reload & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(RUN_ENV) $(PY) -m server.serve -b $(HOST) -p $(PORT) server.asgi:application

# Only the worker, for a deployment that runs the server processes elsewhere.
worker: $(STAMPS)/venv
	$(RUN_ENV) $(PY) manage.py db_worker --no-reload

test: lint check-migrations check-schema pytest

$(STAMPS)/venv: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	mkdir -p $(STAMPS) && touch $@

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

check-migrations: $(STAMPS)/venv
	SECRET_KEY=check $(PY) manage.py makemigrations --check --dry-run

# Fails when schema.graphql is not what the code exports (the pytest suite checks it too).
check-schema: $(STAMPS)/venv
	SECRET_KEY=check $(PY) manage.py export_schema schema --path $(STAMPS)/schema.graphql
	diff -u schema.graphql $(STAMPS)/schema.graphql

schema: $(STAMPS)/venv
	SECRET_KEY=check $(PY) manage.py export_schema schema --path schema.graphql

# The suite runs twice: on the embedded default (SQLite, in-memory layer), then on
# PostgreSQL and Redis. tests/run_on_services.py checks both answer first; with CI=true it
# fails instead of skipping when they do not.
pytest: pytest-embedded pytest-services

pytest-embedded: $(STAMPS)/venv $(STAMPS)/js browser
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest $(PYTEST_ARGS)

pytest-services: $(STAMPS)/venv $(STAMPS)/js browser pgbouncer psycopg3
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	$(PY) tests/run_on_services.py $(PYTEST_ARGS)

# The JavaScript clients the suite runs (graphql-ws, Apollo Client, urql), from the lockfile.
$(STAMPS)/js: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	mkdir -p $(STAMPS) && touch $@

# Debian's chromium for the GraphiQL browser test (Playwright drives it; no download).
# PgBouncer (transaction mode) and psycopg 3's pool: the services pass runs the server
# through each (tests/system/test_database_pools.py). psycopg 3 goes to a directory of its
# own, outside the virtualenv, where only the processes that ask for it import it.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
		echo "Installing Debian's pgbouncer for the pooling tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }

psycopg3: $(STAMPS)/psycopg3.done
$(STAMPS)/psycopg3.done: requirements-pool.txt $(STAMPS)/venv
	rm -rf $(STAMPS)/psycopg3
	$(PY) -m pip install --quiet --no-deps --target $(STAMPS)/psycopg3 -r requirements-pool.txt
	touch $@

browser:
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's chromium for the browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The reference web client (examples/web): rebuild its committed bundle from src/app.js,
# and serve it on http://127.0.0.1:3000 (an origin of its own: list it in ALLOWED_ORIGINS).
web: $(STAMPS)/js
	node_modules/.bin/esbuild examples/web/src/app.js --bundle --format=esm --minify \
		--legal-comments=linked --outfile=examples/web/dist/app.js
	for p in @urql/core wonka graphql-ws @0no-co/graphql.web; do \
	  echo "== $$p@$$(node -p "require('./node_modules/$$p/package.json').version")"; \
	  cat node_modules/$$p/LICENSE*; echo; \
	done > examples/web/dist/THIRD_PARTY_LICENSES.txt

web-serve:
	$(PYTHON) -m http.server 3000 --bind 127.0.0.1 --directory examples/web

# Refresh the vendored GraphiQL assets from the versions pinned in package.json.
vendor-graphiql:
	npm ci --no-audit --no-fund --ignore-scripts
	rm -rf server/static/vendor && mkdir -p server/static/vendor/graphiql
	cp node_modules/react/umd/react.production.min.js \
	   node_modules/react-dom/umd/react-dom.production.min.js \
	   node_modules/graphiql/graphiql.min.js node_modules/graphiql/graphiql.min.css \
	   server/static/vendor/graphiql/
	cp node_modules/@graphiql/plugin-explorer/dist/index.umd.js \
	   server/static/vendor/graphiql/plugin-explorer.umd.js
	cp node_modules/@graphiql/plugin-explorer/dist/style.css \
	   server/static/vendor/graphiql/plugin-explorer.css
	for p in graphiql react react-dom @graphiql/plugin-explorer; do \
	  node -p "'$$p@' + require('./node_modules/$$p/package.json').version"; \
	done > server/static/vendor/graphiql/VERSIONS.txt
	cp node_modules/graphiql/LICENSE server/static/vendor/graphiql/LICENSE.graphiql
	cp node_modules/react/LICENSE server/static/vendor/graphiql/LICENSE.react

clean:
	rm -rf $(VENV) $(STAMPS) node_modules
