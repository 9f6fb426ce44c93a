"""The clickstream collector: routes live in chalicelib/routes, the service in chalicelib/collector.py."""

from chalice import Chalice

from chalicelib.routes import collect, drain, ping

app = Chalice(app_name="clickstream-collector")
app.register_blueprint(ping.bp)
app.register_blueprint(collect.bp)
app.register_blueprint(drain.bp)
