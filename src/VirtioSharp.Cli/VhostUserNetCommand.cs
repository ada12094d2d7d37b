using System.CommandLine;
using System.Globalization;
using VirtioSharp.Cli.Daemon;
using VirtioSharp.Devices.Net;
using VirtioSharp.Memory;
using VirtioSharp.Net.Switch;
using VirtioSharp.Net.Loopback;
using VirtioSharp.Net.Tap;

namespace VirtioSharp.Cli;

/// <summary>
/// `virtio-sharp vhost-user-net`: a virtio-net back-end whose frames go to and come from a Linux TAP interface, or
/// several (one per socket) connected by a built-in L2 switch, or (--loopback) straight back to the front-end that
/// sent them (benchmarks, packet generators such as DPDK testpmd).
/// </summary>
internal static class VhostUserNetCommand
{
    public static DeviceCommandSpec Spec()
    {
        var tap = new Option<string>("--tap") { Description = "TAP interface to attach to (made with `ip tuntap add dev NAME mode tap`) or to create (this, --switch or --loopback)" };
        var sw = new Option<string>("--switch")
        {
            Description = "Connect the guests of every --socket-path (at least two) through a built-in learning L2 switch of this name " +
                "(no kernel networking; incompatible with --tap)",
        };
        var loopback = new Option<bool>("--loopback") { Description = "No network: every frame the front-end sends comes back on the same queue pair's receive queue (benchmarks, DPDK testpmd io loops)" };
        var mac = new Option<string?>("--mac") { Description = "MAC address offered in config (e.g. 52:54:00:12:34:56; with --switch the last byte grows by the port's index); QEMU's virtio-net-pci mac= is what the guest sees" };
        var mtu = new Option<int>("--mtu") { Description = "MTU offered with NET_MTU (68..65535; 0: none); with --switch also the largest payload it carries (0: 1500)", DefaultValueFactory = _ => 0 };
        var pairs = new Option<int>("--queue-pairs") { Description = "Queue pairs (QEMU: -netdev vhost-user,queues=N and virtio-net-pci,mq=on)", DefaultValueFactory = _ => 1 };
        var multi = new Option<bool>("--multi-queue-tap") { Description = "Open the TAP once per queue pair (an interface made with `multi_queue`); without it every pair shares one TAP queue" };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        var macTable = new Option<int>("--mac-table-size") { Description = "--switch: MAC addresses it learns at most (a power of two, 8..1048576)", DefaultValueFactory = _ => 4096 };
        var ageing = new Option<int>("--mac-ageing") { Description = "--switch: seconds a learned address is kept without a frame from it (1..86400)", DefaultValueFactory = _ => 300 };
        var portQueue = new Option<int>("--port-queue-length") { Description = "--switch: frames that may wait for one guest; more are dropped (1..32768)", DefaultValueFactory = _ => 256 };
        return new DeviceCommandSpec("vhost-user-net", "Serve a virtio-net device on a TAP interface to QEMU", "net", [],
            [tap, sw, loopback, mac, mtu, pairs, multi, queueSize, macTable, ageing, portQueue], (r, sockets) =>
            {
                byte[]? macBytes = null;
                if (r.GetValue(mac) is { } m && !TryParseMac(m, out macBytes)) return (null, $"--mac {m}: expected six hex bytes separated by ':' (unicast)");
                int mtuValue = r.GetValue(mtu);
                if (mtuValue != 0 && mtuValue is < 68 or > 65535) return (null, "--mtu must be 0 or 68..65535");
                int n = r.GetValue(pairs);
                if (n is < 1 or > 64) return (null, "--queue-pairs must be 1..64");
                int qs = r.GetValue(queueSize);
                if (qs is < 2 or > 32768 || (qs & (qs - 1)) != 0) return (null, "--queue-size must be a power of two up to 32768");
                var options = new NetDeviceOptions { Mac = macBytes, Mtu = mtuValue, QueuePairs = n, QueueSize = (ushort)Math.Min(qs, 32768), ControlQueue = false, OfferAccessPlatform = true, OfferPacked = true };
                string? tapName = r.GetValue(tap), switchName = r.GetValue(sw);
                bool loop = r.GetValue(loopback);
                if ((tapName is not null ? 1 : 0) + (switchName is not null ? 1 : 0) + (loop ? 1 : 0) > 1)
                    return (null, "give one of --tap NAME, --switch NAME or --loopback");
                if (loop)
                {
                    if (sockets > 1) return (null, "--loopback: one --socket-path (several guests need --switch)");
                    var loops = Enumerable.Range(0, n).Select(_ => LoopbackNetPort.ForDevice(mtuValue, options.QueueSize)).ToArray();
                    var looped = new NetDevice<DeviceMemory<TranslatorRef, RamPort>>(loops, options);
                    return (new DaemonDevice(looped,
                        $"virtio-net on a loopback (every frame sent comes back, {n} queue pair{(n == 1 ? "" : "s")}{(mtuValue > 0 ? $", MTU {mtuValue}" : "")})",
                        () => DeviceCounters([looped]).Concat([
                            ("loopback-dropped", loops.Sum(p => p.Dropped)), ("loopback-waiting", loops.Sum(p => p.Waiting)), ("loopback-oversize", loops.Sum(p => p.Oversize)),
                            ("loopback-too-big", loops.Sum(p => p.TooBig))]),
                        Metrics: NetDeviceMetrics.Create(looped, "loopback")), null);
                }
                if (switchName is not null)
                {
                    if (switchName.Length == 0) return (null, "--switch needs a name");
                    if (r.GetValue(multi)) return (null, "--multi-queue-tap is for --tap; a switch port serves every queue pair");
                    if (sockets < 2) return (null, $"--switch {switchName}: give one --socket-path per guest, at least two (got {sockets})");
                    int tableSize = r.GetValue(macTable);
                    if (tableSize is < 8 or > 1 << 20 || (tableSize & (tableSize - 1)) != 0) return (null, "--mac-table-size must be a power of two, 8..1048576");
                    int age = r.GetValue(ageing);
                    if (age is < 1 or > 86400) return (null, "--mac-ageing must be 1..86400 seconds");
                    int pq = r.GetValue(portQueue);
                    if (pq is < 1 or > 32768) return (null, "--port-queue-length must be 1..32768 frames");
                    return (Switched(switchName, sockets, options, new NetSwitchOptions
                    {
                        Name = switchName, Mtu = mtuValue == 0 ? 1500 : mtuValue, MacTableSize = tableSize,
                        AgeingTime = TimeSpan.FromSeconds(age), QueueLength = pq,
                    }), null);
                }
                if (tapName is not { Length: > 0 } name) return (null, "--tap NAME, --switch NAME or --loopback is required");
                if (sockets > 1) return (null, $"--tap {name}: one --socket-path (several guests need --switch)");
                bool mq = r.GetValue(multi);
                var ports = new List<TapPort>();
                try
                {
                    for (int i = 0; i < (mq ? n : 1); i++) ports.Add(TapPort.Open(name, mq));
                }
                catch (Exception e) when (e is IOException or ArgumentException)
                {
                    foreach (var p in ports) p.Dispose();
                    return (null, $"--tap {name}: {e.Message}");
                }
                var device = new NetDevice<DeviceMemory<TranslatorRef, RamPort>>(ports, options);
                return (new DaemonDevice(device,
                    $"virtio-net on TAP {ports[0].Name} ({(mq ? $"{n} TAP queues" : "one TAP queue")}, {n} queue pair{(n == 1 ? "" : "s")}{(mtuValue > 0 ? $", MTU {mtuValue}" : "")})",
                    () => DeviceCounters([device]).Concat([
                        ("tap-read-errors", ports.Sum(p => p.ReadErrors)), ("tap-write-errors", ports.Sum(p => p.WriteErrors))]),
                    new Ports(ports), Metrics: NetDeviceMetrics.Create(device, name)), null);
            }, MultiSocket: true);
    }

    /// <summary>One device per socket, each on its own port of one switch.</summary>
    private static DaemonDevice Switched(string name, int sockets, NetDeviceOptions options, NetSwitchOptions switchOptions)
    {
        var sw = new NetSwitch(sockets, switchOptions);
        var devices = new List<NetDevice<DeviceMemory<TranslatorRef, RamPort>>>();
        for (int i = 0; i < sockets; i++)
        {
            byte[]? mac = options.Mac is { } m ? [.. m[..5], (byte)(m[5] + i)] : null;
            devices.Add(new NetDevice<DeviceMemory<TranslatorRef, RamPort>>([sw.Ports[i]], options with { Mac = mac }));
        }
        int pairs = options.QueuePairs;
        return new DaemonDevice(devices[0],
            $"virtio-net on switch {name} ({sockets} ports, MTU {switchOptions.Mtu}, MAC table {switchOptions.MacTableSize}, {pairs} queue pair{(pairs == 1 ? "" : "s")} each)",
            () => SwitchCounters(sw, devices),
            Metrics: new DisposableGroup([NetSwitchMetrics.Create(sw), .. devices.Select((d, i) => NetDeviceMetrics.Create(d, $"{name}/port{i}"))]),
            Devices: devices);
    }

    private static IEnumerable<(string, long)> SwitchCounters(NetSwitch sw, List<NetDevice<DeviceMemory<TranslatorRef, RamPort>>> devices)
    {
        // The devices' totals under the same keys as on a TAP, then each port's view ("portN-…"), then the MAC table.
        var list = DeviceCounters(devices).ToList();
        foreach (var p in sw.Ports)
        {
            var s = p.Stats;
            string k = $"port{p.Index}-";
            list.AddRange([
                (k + "tx-packets", s.TxPackets), (k + "tx-bytes", s.TxBytes), (k + "rx-packets", s.RxPackets), (k + "rx-bytes", s.RxBytes),
                (k + "tx-dropped", s.TxDropped), (k + "rx-dropped", s.RxDropped), (k + "floods", s.Floods), (k + "filtered", s.Filtered)]);
        }
        list.AddRange([("mac-entries", sw.MacEntries), ("mac-evictions", sw.MacEvictions)]);
        return list;
    }

    private static IEnumerable<(string, long)> DeviceCounters(IReadOnlyList<NetDevice<DeviceMemory<TranslatorRef, RamPort>>> devices)
    {
        var all = devices.Select(d => d.Stats).ToList();
        long Sum(Func<NetDeviceStats, long> f) => all.Sum(f);
        return
        [
            ("tx-packets", Sum(s => s.TxPackets)), ("tx-bytes", Sum(s => s.TxBytes)), ("rx-packets", Sum(s => s.RxPackets)), ("rx-bytes", Sum(s => s.RxBytes)),
            ("tx-dropped", Sum(s => s.TxShort + s.TxOversize + s.TxBadGso + s.TxBadCsum + s.TxLinkDown + s.TxPortDropped + s.TxFault)),
            ("rx-lost", Sum(s => s.RxLost)), ("rx-bad-header", Sum(s => s.RxBadHeader)), ("rx-bad-buffers", Sum(s => s.RxBadBuffers)), ("rx-no-buffers", Sum(s => s.RxNoBuffers)),
            ("rarp-sent", Sum(s => s.RarpSent)), ("rarp-dropped", Sum(s => s.RarpDropped)),
        ];
    }

    internal static bool TryParseMac(string text, out byte[]? mac)
    {
        mac = null;
        var parts = text.Split(':');
        if (parts.Length != 6) return false;
        var b = new byte[6];
        for (int i = 0; i < 6; i++)
            if (parts[i].Length != 2 || !byte.TryParse(parts[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out b[i])) return false;
        if ((b[0] & 1) != 0) return false;
        mac = b;
        return true;
    }

    private sealed class Ports(List<TapPort> ports) : IDisposable
    {
        public void Dispose() { foreach (var p in ports) p.Dispose(); }
    }
}
