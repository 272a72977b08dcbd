#!/bin/sh
# The claudegate binary plus its systemd --user service; run by `make install` / `make uninstall`:
#
#   sh contrib/service.sh install BINARY PREFIX    BINARY → PREFIX/bin/claudegate, config (only if
#                                                  none exists), unit, enable and (re)start
#   sh contrib/service.sh uninstall "" PREFIX      stop, disable, remove unit and binary
#
# No root needed. Config and data are never removed. Where no systemd user instance answers
# (containers, WSL without systemd, minimal hosts) it says so and shows the foreground command.
set -eu

action=${1:?usage: service.sh install|uninstall BINARY PREFIX}
src=${2-}
prefix=${3:?usage: service.sh install|uninstall BINARY PREFIX}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

name=claudegate.service
bin="$prefix/bin/claudegate"
unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
unit="$unit_dir/$name"
# claudegate's own default config path (it does not follow XDG_CONFIG_HOME).
config="$HOME/.config/claudegate/config.json"

# Succeeds when a systemd user manager answers; otherwise $why says what went wrong.
have_user_systemd() {
	if ! command -v systemctl >/dev/null 2>&1; then
		why="systemctl is not installed"
		return 1
	fi
	if ! why=$(systemctl --user show-environment 2>&1 >/dev/null); then
		why="\`systemctl --user\` failed: $(printf '%s' "$why" | head -n 1)"
		return 1
	fi
}

# The command to show the user: plain `claudegate` if PREFIX/bin is on PATH.
case ":$PATH:" in
*":$prefix/bin:"*) cmd=claudegate ;;
*) cmd=$bin ;;
esac

install_all() {
	[ -f "$src" ] || { echo "error: no binary at $src" >&2; exit 1; }
	nl='
'
	case "$bin" in
	*\"* | *\\* | *"$nl"*)
		echo "error: PREFIX must not contain quotes, backslashes or newlines: $prefix" >&2
		exit 1
		;;
	esac

	# 1. The binary, replaced atomically (a running service keeps its old inode until restarted).
	mkdir -p "$prefix/bin"
	install -m 0755 "$src" "$bin.new.$$"
	mv -f "$bin.new.$$" "$bin"
	echo "binary:  $bin ($(wc -c <"$bin" | tr -d ' ') bytes; $("$bin" --version))"

	# 2. A config, only if there is none. Minimal on purpose: keys left out keep following the
	#    defaults of future versions (model catalogue, Claude Code version, endpoints), where a
	#    full copy of config.example.json would freeze them.
	if [ -e "$config" ]; then
		echo "config:  $config (exists, left as it is)"
	else
		mkdir -p "$(dirname "$(dirname "$config")")"
		[ -d "$(dirname "$config")" ] || mkdir -m 0700 "$(dirname "$config")"
		umask 077
		printf '{\n  "host": "127.0.0.1",\n  "port": 8317\n}\n' >"$config"
		chmod 0600 "$config"
		echo "config:  $config (new; every other key is at its default, see config.example.json)"
	fi

	# 3. The unit, with ExecStart pointing at this binary (systemd escaping: % → %%, $ → $$).
	exec_bin=$(printf '%s' "$bin" | sed 's/%/%%/g; s/\$/$$/g')
	exec_start="\"$exec_bin\" --config %h/.config/claudegate/config.json serve"
	mkdir -p "$unit_dir"
	while IFS= read -r line; do
		case $line in
		'ExecStart=@EXEC_START@') printf 'ExecStart=%s\n' "$exec_start" ;;
		*) printf '%s\n' "$line" ;;
		esac
	done <"$here/claudegate.service" >"$unit.new.$$"
	chmod 0644 "$unit.new.$$"
	mv -f "$unit.new.$$" "$unit"
	echo "unit:    $unit"

	# 4. Enable and (re)start it, if a user manager runs here. `restart` rather than
	#    `enable --now`, so that reinstalling over a running service runs the new binary.
	status=0 running=""
	if have_user_systemd; then
		running=1
		systemctl --user daemon-reload
		systemctl --user enable "$name"
		systemctl --user restart "$name"
		sleep 2
		# Up, and not in a restart loop (Restart=on-failure would hide a crash at start).
		if systemctl --user is-active --quiet "$name" &&
			[ "$(systemctl --user show -p NRestarts --value "$name")" = 0 ]; then
			echo "service: $name enabled and running (config $config; default address http://127.0.0.1:8317)"
		else
			echo "error: $name did not stay up; its log says why: journalctl --user -u claudegate -n 20" >&2
			systemctl --user --no-pager --lines=20 status "$name" >&2 || true
			status=1
		fi
		if command -v loginctl >/dev/null 2>&1 &&
			[ "$(loginctl show-user "$(id -un)" -p Linger --value 2>/dev/null)" = no ]; then
			echo "note:    it stops when you log out; to keep it running (and start it at boot):"
			echo "             loginctl enable-linger $(id -un)"
		fi
	else
		cat <<EOF
service: not started: no systemd user instance here ($why).
         The unit is installed and will be used on a host where \`systemctl --user\` works
         (systemctl --user daemon-reload && systemctl --user enable --now claudegate).
         Here, run claudegate in the foreground instead (or under your own supervisor):
             $cmd serve
EOF
	fi

	case $cmd in
	claudegate) ;;
	*) echo "note:    $prefix/bin is not on your PATH; add it, e.g. in ~/.profile: export PATH=\"$prefix/bin:\$PATH\"" ;;
	esac
	echo
	echo "Next steps:"
	echo "    log in to Claude:          $cmd login   (headless host: add --manual)"
	echo "    a key for each app:        $cmd keys add my-app"
	echo "    the login and its state:   $cmd status"
	[ -z "$running" ] || echo "    the service's log:         journalctl --user -u claudegate -f"
	return $status
}

uninstall_all() {
	if have_user_systemd; then
		systemctl --user disable --now "$name" >/dev/null 2>&1 || true
	else
		echo "service: no systemd user instance here ($why); nothing to stop"
	fi
	# The enable symlink too, in case systemd is gone since the install.
	rm -f "$unit" "$unit_dir/default.target.wants/$name"
	if have_user_systemd; then
		systemctl --user daemon-reload
		systemctl --user reset-failed "$name" >/dev/null 2>&1 || true
	fi
	echo "removed: $unit"
	rm -f "$bin"
	echo "removed: $bin"
	echo "kept:    $config and the data dir (\`data_dir\`, default ~/.local/share/claudegate): keys and login"
}

case $action in
install) install_all ;;
uninstall) uninstall_all ;;
*)
	echo "usage: service.sh install|uninstall BINARY PREFIX" >&2
	exit 2
	;;
esac
