from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_slack')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ConcurrencyGroup',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=200)),
                ('holder_run_id', fields.IntField(null=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'concurrency_group', 'app': 'models', 'pk_attr': 'name', 'table_description': 'Who holds a concurrency group: claimed and freed by compare-and-set only.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ScheduleFire',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.CharField(max_length=80)),
                ('schedule_key', fields.CharField(max_length=64)),
                ('fire_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('outcome', fields.CharField(default='claimed', max_length=16)),
                ('run_id', fields.IntField(null=True)),
                ('detail', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'schedule_fire', 'app': 'models', 'unique_together': (('pipeline', 'schedule_key', 'fire_at'),), 'pk_attr': 'id', 'table_description': "One fire of a pipeline's schedule, claimed before its run starts."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.CharField(max_length=80)),
                ('delivery_id', fields.CharField(max_length=128)),
                ('run_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'unique_together': (('pipeline', 'delivery_id'),), 'pk_attr': 'id', 'table_description': 'A webhook delivery id already acted on (a redelivery answers the same run).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Run',
            name='concurrency_group',
            field=fields.CharField(null=True, db_index=True, max_length=200),
        ),
        ops.AddField(
            model_name='Run',
            name='queued_behind',
            field=fields.IntField(null=True),
        ),
    ]
