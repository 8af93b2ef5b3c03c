//! `--help` text.

/// Brief usage, in the shape of `nbdkit --help`, with the program's name.
pub fn usage(program: &str) -> String {
    USAGE.replace("vddk-nbd ", &format!("{program} "))
}

const USAGE: &str = "\
vddk-nbd: serve a VMware disk over NBD through VDDK (nbdkit vddk compatible)

Usage:
  vddk-nbd [FLAGS] [--filter=FILTER ...] [vddk] [file=]DISK [KEY=VALUE ...]
  vddk-nbd [FLAGS] [--filter=FILTER ...] file|null|memory [KEY=VALUE ...]
  vddk-nbd [--filter=FILTER ...] [PLUGIN] [KEY=VALUE ...] --help|--version|--dump-plugin
  vddk-nbd --dump-config | --long-options | --short-options
  vddk-nbd thumbprint HOST[:PORT]
  vddk-nbd --help | --version

Plugins: vddk (the default), file, null, memory.
Filters: blocksize, cacheextents, count, cow, multi-conn, noextents, rate,
retry (the first --filter is nearest the client; PLUGIN --help lists their
parameters).

Server flags:
  -r, --readonly             serve read-only
  -p, --port PORT            TCP port (default 10809)
  -i, --ipaddr ADDR          listen on ADDR only (-4/-6 restrict resolution)
  -U, --unix SOCKET          listen on a Unix socket (mode 0600); -U - makes
                             a private one
  -s, --single               serve one connection on stdin/stdout
  -e, --exportname NAME      export name (also used in --run's $uri)
  -f, --foreground           do not go to the background
  -P, --pidfile FILE         write the server's pid to FILE once listening
  -t, --threads N            requests in flight per connection
      --request-memory=SIZE  read and write data all clients together may
                             have the server hold (default: 1/16 of memory,
                             64M to 1G)
  -v, --verbose              debug messages on stderr
  -D PLUGIN.FLAG=N           debug flag (e.g. -D vddk.stats=1)
      --run 'COMMAND'        run COMMAND with $uri, $nbd, $port, $unixsocket
                             and $exportname set; exit with its status
      --dump-plugin          print the library's properties and exit
      --dump-config          print the build configuration (nbdkit's keys)
      --filter=FILTER        stack FILTER over the plugin
  -o, --oldstyle             the oldstyle handshake (one export, no options)
  -n, --newstyle             the newstyle handshake (the default)
      --selinux-label=LABEL  SELinux label of the listening sockets
      --exit-with-parent     stop when the parent process exits
      --tls=off|on|require   TLS (NBD_OPT_STARTTLS): off (default), allowed,
                             or required of every client
      --tls-certificates DIR server-cert.pem, server-key.pem (and ca-cert.pem)
                             (default /etc/pki/nbdkit, or ~/.pki/nbdkit)
      --tls-verify-peer      clients must present a certificate signed by
                             ca-cert.pem
  -u, --user USER            become USER (and its groups) once listening
  -g, --group GROUP          become GROUP once listening

Disk parameters (as nbdkit-vddk-plugin(1)):
  [file=]DISK                absolute path, or \"[datastore] dir/disk.vmdk\"
  libdir=DIR                 VDDK distribution directory
  config=FILE                VDDK configuration file
  server=HOST port=PORT nfchostport=PORT thumbprint=XX:XX:...
  user=USER password=PASSWORD|-|+FILE|-FD cookie=COOKIE|-|+FILE|-FD
  vm=moref=ID snapshot=MOREF transports=MODE:MODE:...
  compression=none|zlib|fastlz|skipz single-link=true unbuffered=true
  create=true create-size=SIZE create-type=monolithic-sparse|...
  create-adapter-type=ide|scsi-buslogic|scsi-lsilogic
  create-hwversion=workstation4|...|esx65|N
  vimapiver=VERSION          accepted and ignored

How requests reach VDDK:
  io=auto|direct|pipelined   direct: synchronous calls from the serving
                             threads; pipelined: async calls, many in flight,
                             from a thread per disk (-t bounds them); auto
                             (default): direct for the file transport

Several disks, chosen by the client's export name:
  export=WILDCARD            serve disk paths matching WILDCARD (as nbdkit 1.46:
                             * crosses /, \\ escapes), e.g. \"\\[ds1\\] web/*.vmdk\"
  vmx=FILE.vmx               serve every disk of a local VM as scsi0:0, ...

Servers:
  uri=esx://[USER@]HOST[:PORT]/[?no_verify=1]
  uri=vpx://[USER@]VCENTER[:PORT]/DC/[FOLDER/...][CLUSTER/]HOST[?no_verify=1]
  thumbprint=auto            fetch the server's thumbprint and use it

Example:
  vddk-nbd -U - libdir=/opt/vmware-vix-disklib-distrib /data/disk.vmdk \\
      --run 'nbdinfo \"$uri\"'
";
