# Gunicorn reads ./gunicorn.conf.py from its working directory by itself, so
# this applies to the Procfile's command without spelling it there.

# Gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl, a path
# every gunicorn of every app on a node would share; this app has no use for it.
# (Gunicorn versions without the setting ignore it.)
control_socket_disable = True
