from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_replicas')]

    initial = False

    operations = [
        ops.CreateModel(
            name='PipelineRecord',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=80)),
                ('first_seen_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'pipeline_record', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A pipeline name seen once: its ``id`` (API ``pipeline_id``) never changes.'},
            bases=['Model'],
        ),
    ]
