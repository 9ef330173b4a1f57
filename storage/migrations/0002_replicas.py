from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Lease',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=128)),
                ('owner', fields.CharField(max_length=96)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('tokens', fields.FloatField(null=True)),
                ('tokens_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'lease', 'app': 'models', 'pk_attr': 'name', 'table_description': 'A named piece of service-wide work held by one replica at a time.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Replica',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=96)),
                ('host', fields.CharField(max_length=255)),
                ('pid', fields.IntField()),
                ('port', fields.IntField(null=True)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('lease_until', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('draining', fields.BooleanField(default=False)),
            ],
            options={'table': 'replica', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One ``ansflow serve`` (or ``ansflow run``) process, alive while its lease is renewed.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Run',
            name='owner',
            field=fields.CharField(null=True, db_index=True, max_length=96),
        ),
        ops.AddField(
            model_name='StepRun',
            name='owner',
            field=fields.CharField(null=True, db_index=True, max_length=96),
        ),
    ]
