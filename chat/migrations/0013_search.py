import django.contrib.postgres.search
from django.db import migrations

# PostgreSQL keeps each message's tsvector itself (so every write path, the admin's and a
# bulk load's included, stays searchable), and a GIN index answers @@ queries. The
# 'simple' configuration: no stemming, the same for every language people chat in.
FORWARD = """
CREATE FUNCTION chat_message_search_vector() RETURNS trigger AS $$
BEGIN
  NEW.search_vector := to_tsvector('simple', coalesce(NEW.body, ''));
  RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER chat_message_search_vector
  BEFORE INSERT OR UPDATE OF body ON chat_message
  FOR EACH ROW EXECUTE FUNCTION chat_message_search_vector();
UPDATE chat_message SET search_vector = to_tsvector('simple', coalesce(body, ''));
CREATE INDEX chat_message_search_idx ON chat_message USING gin (search_vector);
"""
BACKWARD = """
DROP INDEX IF EXISTS chat_message_search_idx;
DROP TRIGGER IF EXISTS chat_message_search_vector ON chat_message;
DROP FUNCTION IF EXISTS chat_message_search_vector();
"""


def on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0012_mentions"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="search_vector",
            field=django.contrib.postgres.search.SearchVectorField(editable=False, null=True),
        ),
        migrations.RunPython(on_postgresql(FORWARD), on_postgresql(BACKWARD)),
    ]
