# docker.sh: real containers of the test sidecar for the docker driver's system
# tests; source it after lib.sh, bottles.sh and daemon.sh. Defines functions only:
# it starts nothing by itself; docker_setup installs the cleanup.
# shellcheck shell=bash
#
#   docker_setup                    skip (exit 77) or fail when no engine answers (see below); else make
#                                   $BR_TMP, an EXIT trap that also removes this test's containers and
#                                   image, and the image $DOCKER_IMAGE holding $BR_SIDECAR
#   bottle_metadata SLUG            give SLUG a compose project ($DOCKER_RUN-SLUG) in its metadata.json
#   container_name SLUG SIDECAR     print the container's name, as the default template {project}-{sidecar}-1 gives it
#   container_run SLUG SIDECAR [ARG...]   docker run the sidecar of SLUG as production does: its live file's
#                                   directory bind-mounted, --restart unless-stopped, log on stdout; then
#                                   wait for its start line. ARGs go to docker run before the image; with
#                                   a -v among them, they replace the directory mount
#   container_log SLUG SIDECAR      print the container's log: the sidecar's own lines
#   container_loaded SLUG SIDECAR HASH [EVENT]  succeed once its log has an ok line (of EVENT) for HASH
#   container_count SLUG SIDECAR [EVENT] [HASH] [STATUS]  print how many of its log lines match
#   container_count_ge SLUG SIDECAR N   succeed once its log has at least N start lines
#   container_field SLUG SIDECAR GOTEMPLATE  print docker inspect --format GOTEMPLATE of the container
#   container_running SLUG SIDECAR  succeed while the container runs (and is not paused)
#   container_older_than SLUG SIDECAR MS  succeed once the container started more than MS ms ago
#   docker_config FILE [RELOAD...]  write a daemon config with the docker driver for both sidecars, grace
#                                   500 ms; RELOAD is more keys for both reload mappings (", verify: true");
#                                   top-level KEY: VALUE lines on stdin are appended
#
# Without an engine the tests are skipped with exit status 77 and a message
# saying so, unless BR_REQUIRE_DOCKER=1 (CI sets it): then they fail.

DOCKER_RUN=brt$$
DOCKER_IMAGE=
DOCKER_CONTAINERS=()

_docker_cleanup() {
  local rc=$? c
  set +e
  for c in "${DOCKER_CONTAINERS[@]}"; do
    docker rm -f "$c" >/dev/null 2>&1
  done
  # Anything else this run labelled (a container a test recreated by hand).
  docker ps -aq --filter "label=br-test=$DOCKER_RUN" | xargs -r docker rm -f >/dev/null 2>&1
  [[ -n $DOCKER_IMAGE ]] && docker rmi -f "$DOCKER_IMAGE" >/dev/null 2>&1
  (exit "$rc")
  _br_cleanup
}

docker_setup() {
  if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    local why="no Docker engine answers (docker info failed${DOCKER_HOST:+, DOCKER_HOST=$DOCKER_HOST})"
    [[ ${BR_REQUIRE_DOCKER:-0} == 1 ]] && fail "$why, and BR_REQUIRE_DOCKER=1 requires one"
    echo "SKIP: $why; set BR_REQUIRE_DOCKER=1 to make that a failure" >&2
    exit 77
  fi
  br_tmpdir
  trap _docker_cleanup EXIT
  _docker_image_build
}

# The machine reaches no registry: the image is the sidecar binary and the
# libraries ldd names, at the same paths, in a tarball for docker import.
_docker_image_build() {
  local root=$BR_TMP/rootfs lib
  mkdir -p "$root/tmp" "$root/etc"
  chmod 1777 "$root/tmp"
  cp "${BR_SIDECAR:?BR_SIDECAR must name the br-test-sidecar binary}" "$root/br-test-sidecar"
  for lib in $(ldd "$BR_SIDECAR" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  DOCKER_IMAGE=br-test-sidecar:$DOCKER_RUN
  tar -C "$root" -cf "$BR_TMP/rootfs.tar" .
  docker import --change 'ENTRYPOINT ["/br-test-sidecar"]' "$BR_TMP/rootfs.tar" "$DOCKER_IMAGE" >/dev/null ||
    fail "docker import of the test sidecar image failed"
}

bottle_metadata() {
  printf '{"compose_project": "%s-%s"}\n' "$DOCKER_RUN" "$1" >"$BR_TMP/state/$1/metadata.json"
}

container_name() {
  echo "$DOCKER_RUN-$1-$2-1"
}

container_run() {
  local slug=$1 sidecar=$2 name dir file
  shift 2
  name=$(container_name "$slug" "$sidecar")
  if [[ $sidecar == pipelock ]]; then
    dir=$BR_TMP/state/$slug/pipelock file=/etc/pipelock/pipelock.yaml
  else
    dir=$BR_TMP/state/$slug/egress file=/etc/egress/egress_routes.yaml
  fi
  local -a mount=(-v "$dir:$(dirname "$file")")
  local arg
  for arg in "$@"; do
    [[ $arg == -v ]] && mount=()
  done
  DOCKER_CONTAINERS+=("$name")
  # ASan's leak check at exit needs ptrace, which a container may not have.
  docker run -d --name "$name" --label "br-test=$DOCKER_RUN" --restart unless-stopped \
    -e ASAN_OPTIONS=detect_leaks=0 "${mount[@]}" "$@" "$DOCKER_IMAGE" \
    --mode "$sidecar" --file "$file" --log - --pidfile /tmp/sidecar.pid >/dev/null ||
    fail "docker run $name failed"
  wait_for container_has_started "$slug" "$sidecar"
}

container_has_started() {
  (($(container_count "$1" "$2" start) > 0))
}

container_log() {
  docker logs "$(container_name "$1" "$2")" 2>/dev/null
}

container_count() {
  local event=${3:-*} hash=${4:-*} status=${5:-*}
  container_log "$1" "$2" | awk -v e="$event" -v h="$hash" -v s="$status" \
    '(e == "*" || $2 == e) && (h == "*" || $3 == h) && (s == "*" || $4 == s) { n++ }
     END { print n + 0 }'
}

container_loaded() {
  (($(container_count "$1" "$2" "${4:-*}" "$3" ok) > 0))
}

container_field() {
  docker inspect --format "$3" "$(container_name "$1" "$2")" 2>/dev/null
}

container_running() {
  [[ $(container_field "$1" "$2" '{{.State.Running}} {{.State.Paused}}') == "true false" ]]
}

container_older_than() {
  local started
  started=$(container_field "$1" "$2" '{{.State.StartedAt}}')
  (($(date +%s%N) - $(date -d "$started" +%s%N) > $3 * 1000000))
}

docker_config() {
  local file=$1 extra=${2:-}
  {
    cat <<YAML
state_dir: $BR_TMP/state
pipelock:
  settle_ms: 150
  reload: {driver: docker, grace_ms: 500$extra}
egress:
  reload: {driver: docker, grace_ms: 500$extra}
YAML
    [[ -t 0 ]] || cat
  } >"$file"
}

container_count_ge() {
  (($(container_count "$1" "$2" start) >= $3))
}
