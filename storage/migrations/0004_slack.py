from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_pipeline_ids')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Run',
            name='rerun_of',
            field=fields.IntField(null=True),
        ),
        ops.CreateModel(
            name='SlackClaim',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=128)),
                ('run_id', fields.IntField(null=True)),
                ('claimed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'slack_claim', 'app': 'models', 'pk_attr': 'key', 'table_description': 'A Slack action taken once service-wide: the first insert of its key wins.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='HomeViewer',
            fields=[
                ('user_id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'home_viewer', 'app': 'models', 'pk_attr': 'user_id', 'table_description': 'Someone who has opened the app\'s Home tab: their Home is republished on changes.'},
            bases=['Model'],
        ),
    ]
