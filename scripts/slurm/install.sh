#!/usr/bin/env bash
# Install SLURM (slurm-wlm: slurmctld + slurmd + clients) and munge from Debian,
# for a single-node test cluster on a development machine or in CI.
#
# - Non-interactive, no recommended packages, and no services started: Debian's
#   maintainer scripts would try to start munge/slurmd; a temporary
#   /usr/sbin/policy-rc.d that exits 101 forbids that (start.sh starts the
#   daemons itself, without systemd).
# - Idempotent: a fast no-op when everything is already installed.
# - No slurmdbd / MariaDB: the project polls job status with squeue (see start.sh).
#
# Usage: sudo scripts/slurm/install.sh      (root required for apt-get)
set -euo pipefail

PACKAGES=(slurm-wlm munge)
# Extra packages can be requested, e.g. GCSTUDY_SLURM_EXTRA_PACKAGES="shellcheck".
read -r -a EXTRA <<<"${GCSTUDY_SLURM_EXTRA_PACKAGES:-}"
PACKAGES+=("${EXTRA[@]}")

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [[ ${#missing[@]} -eq 0 ]] && command -v slurmctld >/dev/null && command -v munged >/dev/null; then
    echo "install.sh: ${PACKAGES[*]} already installed: nothing to do"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get); missing: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
if [[ -e $POLICY ]]; then
    policy_backup=$(mktemp)
    cp -p "$POLICY" "$policy_backup"
fi
restore_policy() {
    if [[ -n $policy_backup ]]; then
        mv -f "$policy_backup" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# installed by gcstudy scripts/slurm/install.sh: do not start services\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

echo "install.sh: installing ${missing[*]}"
# Refresh the package lists only when they are missing or older than a day.
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 -print -quit 2>/dev/null) ]]; then
    apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}"

for bin in slurmctld slurmd sinfo sbatch squeue munged; do
    command -v "$bin" >/dev/null || { echo "install.sh: $bin missing after install" >&2; exit 1; }
done
echo "install.sh: done (slurm-wlm $(dpkg-query -W -f='${Version}' slurm-wlm), munge $(dpkg-query -W -f='${Version}' munge))"
