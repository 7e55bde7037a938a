// The shipped Debian 12 -> 13 migration rules (rules.hpp has the syntax and the
// precedence). `mirage-migrate rules --default` prints this text as it is.
#include "libmirage/migrate/rules.hpp"

namespace mirage::migrate {

std::string_view default_rules_text() {
  static constexpr std::string_view text = R"json({
  "version": 1,
  "name": "debian-12-to-13",
  "description": "Debian 12 (bookworm) to Debian 13 (trixie): the user area and local software stay in place, accounts are merged record by record, local settings are carried, caches and DSA host keys never are.",
  "components": [
    {"name": "user-area", "action": "keep-in-place",
     "include": ["/home", "/root", "/srv"],
     "description": "Users' files: never moved, never rewritten."},
    {"name": "local-software", "action": "keep-in-place",
     "include": ["/usr/local", "/opt"],
     "description": "Software installed outside the package manager."},
    {"name": "identity", "action": "keep-endpoint",
     "include": ["/etc/hostname", "/etc/hosts", "/etc/machine-id", "/var/lib/dbus/machine-id", "/etc/ssh/ssh_host_*",
                 "/etc/fstab", "/etc/crypttab", "/etc/mailname", "/etc/adjtime", "/var/lib/systemd/random-seed"],
     "description": "The machine's name, ids, SSH host keys (DSA ones are excluded unconditionally) and disks."},
    {"name": "mirage", "action": "keep-in-place",
     "include": ["/var/lib/mirage", "/etc/mirage", "/old-root"],
     "description": "The endpoint's own state, its post-migration hooks and earlier migrations' old systems."},
    {"name": "accounts", "action": "merge-records",
     "include": ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid", "/etc/subgid"],
     "description": "Record by record (layer/records.hpp): human uids and gids unchanged, the new release's system accounts, collisions remapped."},
    {"name": "network", "action": "keep-endpoint",
     "include": ["/etc/NetworkManager/system-connections", "/etc/network/interfaces", "/etc/network/interfaces.d"],
     "description": "NetworkManager connections and ifupdown interfaces."},
    {"name": "printers", "action": "keep-endpoint",
     "include": ["/etc/cups/printers.conf", "/etc/cups/classes.conf", "/etc/cups/ppd"],
     "description": "CUPS queues and their PPDs."},
    {"name": "user-crontabs", "action": "keep-endpoint",
     "include": ["/var/spool/cron/crontabs"],
     "description": "Users' crontabs (crontab -e)."},
    {"name": "system-cron", "action": "merge-3way",
     "include": ["/etc/cron.d", "/etc/crontab"],
     "description": "Local cron jobs beside the new release's; a conflict is kept as PATH.mirage-local."},
    {"name": "sudoers", "action": "keep-endpoint",
     "include": ["/etc/sudoers.d"],
     "exclude": ["/etc/sudoers.d/README"],
     "description": "Local sudo rules (checked with visudo -c); the package's README is the new release's."},
    {"name": "locale-time-keyboard", "action": "keep-endpoint",
     "include": ["/etc/default/locale", "/etc/locale.gen", "/etc/locale.conf", "/etc/timezone", "/etc/localtime",
                 "/etc/default/keyboard", "/etc/default/console-setup", "/etc/vconsole.conf"],
     "description": "Locale, time zone and keyboard layout."},
    {"name": "ca-certificates", "action": "keep-endpoint",
     "include": ["/usr/local/share/ca-certificates", "/etc/ca-certificates.conf"],
     "description": "Local CA certificates (the bundle in /etc/ssl/certs is regenerated)."},
    {"name": "systemd-units", "action": "merge-3way",
     "include": ["/etc/systemd/system"],
     "description": "Local units and their enablement links (re-enabled only where the unit exists in the new system)."}
  ],
  "unconditional_exclude": [
    "/var/cache", "/var/tmp", "/tmp", "/var/lib/apt/lists", "/etc/ld.so.cache",
    "/etc/ssh/ssh_host_dsa_key", "/etc/ssh/ssh_host_dsa_key.pub"
  ]
}
)json";
  return text;
}

}  // namespace mirage::migrate
