# Gunicorn reads ./gunicorn.conf.py from its working directory by itself, so
# these settings apply to the Procfile's command without spelling them there.

# /slow sleeps up to 30 s; the default 30 s worker timeout would race it and
# kill the worker mid-request. Kept short otherwise: workers orphaned by a
# SIGKILLed master notice it within timeout / 2 seconds and exit.
timeout = 40

# Gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl, a path
# every gunicorn of every app on a node would share; this app has no use for it.
# (Gunicorn versions without the setting ignore it.)
control_socket_disable = True
