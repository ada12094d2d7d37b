using System.CommandLine;
using System.Globalization;
using VirtioSharp.Cli.Daemon;
using VirtioSharp.Devices.Net;
using VirtioSharp.Memory;
using VirtioSharp.Net.Loopback;
using VirtioSharp.Net.Tap;

namespace VirtioSharp.Cli;

/// <summary>
/// `virtio-sharp vhost-user-net`: a virtio-net back-end whose frames go to and come from a Linux TAP interface, or
/// (--loopback) straight back to the front-end that sent them (benchmarks, packet generators such as DPDK testpmd).
/// </summary>
internal static class VhostUserNetCommand
{
    public static DeviceCommandSpec Spec()
    {
        var tap = new Option<string>("--tap") { Description = "TAP interface to attach to (made with `ip tuntap add dev NAME mode tap`) or to create (this or --loopback)" };
        var loopback = new Option<bool>("--loopback") { Description = "No network: every frame the front-end sends comes back on the same queue pair's receive queue (benchmarks, DPDK testpmd io loops)" };
        var mac = new Option<string?>("--mac") { Description = "MAC address offered in config (e.g. 52:54:00:12:34:56); QEMU's virtio-net-pci mac= is what the guest sees" };
        var mtu = new Option<int>("--mtu") { Description = "MTU offered with NET_MTU (68..65535; 0: none)", DefaultValueFactory = _ => 0 };
        var pairs = new Option<int>("--queue-pairs") { Description = "Queue pairs (QEMU: -netdev vhost-user,queues=N and virtio-net-pci,mq=on)", DefaultValueFactory = _ => 1 };
        var multi = new Option<bool>("--multi-queue-tap") { Description = "Open the TAP once per queue pair (an interface made with `multi_queue`); without it every pair shares one TAP queue" };
        var queueSize = new Option<int>("--queue-size") { Description = "Largest queue size accepted", DefaultValueFactory = _ => 1024 };
        return new DeviceCommandSpec("vhost-user-net", "Serve a virtio-net device on a TAP interface to QEMU", "net", [],
            [tap, loopback, mac, mtu, pairs, multi, queueSize], r =>
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
                bool loop = r.GetValue(loopback);
                if (loop && r.GetValue(tap) is not null) return (null, "--tap and --loopback exclude each other: give one");
                if (loop)
                {
                    var loops = Enumerable.Range(0, n).Select(_ => new LoopbackNetPort()).ToArray();
                    var looped = new NetDevice<DeviceMemory<TranslatorRef, RamPort>>(loops, options);
                    return (new DaemonDevice(looped,
                        $"virtio-net on a loopback (every frame sent comes back, {n} queue pair{(n == 1 ? "" : "s")}{(mtuValue > 0 ? $", MTU {mtuValue}" : "")})",
                        () => Counters(looped, [
                            ("loopback-dropped", loops.Sum(p => p.Dropped)), ("loopback-waiting", loops.Sum(p => p.Waiting)), ("loopback-oversize", loops.Sum(p => p.Oversize)),
                            ("loopback-too-big", loops.Sum(p => p.TooBig))])), null);
                }
                if (r.GetValue(tap) is not { Length: > 0 } name) return (null, "--tap NAME or --loopback is required");
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
                    () => Counters(device, [("tap-read-errors", ports.Sum(p => p.ReadErrors)), ("tap-write-errors", ports.Sum(p => p.WriteErrors))]),
                    new Ports(ports)), null);
            });
    }

    private static IEnumerable<(string, long)> Counters(NetDevice<DeviceMemory<TranslatorRef, RamPort>> device, IEnumerable<(string, long)> port)
    {
        var s = device.Stats;
        return
        [
            ("tx-packets", s.TxPackets), ("tx-bytes", s.TxBytes), ("rx-packets", s.RxPackets), ("rx-bytes", s.RxBytes),
            ("tx-dropped", s.TxShort + s.TxOversize + s.TxBadGso + s.TxBadCsum + s.TxLinkDown + s.TxPortDropped + s.TxFault),
            ("rx-lost", s.RxLost), ("rx-bad-header", s.RxBadHeader), ("rx-bad-buffers", s.RxBadBuffers), ("rx-no-buffers", s.RxNoBuffers),
            .. port,
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
