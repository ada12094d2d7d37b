using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using VirtioSharp.Drivers;
using VirtioSharp.Spec;
using VirtioSharp.Devices.Block;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.BlkLoad;

/// <summary>
/// Connects to a vhost-user-blk back-end as its front-end, runs one fixed-time load and prints one RESULT line:
/// IOPS, MB/s (10^6 bytes), p50/p99 latency and the back-end's CPU time per request.
/// </summary>
internal static class Program
{
    // What a Linux guest would negotiate, minus the layouts qemu-storage-daemon 7.2 does not offer (packed, in-order):
    // both back-ends are driven over the same split ring.
    private static ulong Features(bool indirect) =>
        Bit(BlkFeature.SizeMax) | Bit(BlkFeature.SegMax) | Bit(BlkFeature.BlkSize) | Bit(BlkFeature.Flush) | Bit(BlkFeature.Mq) |
        Bit(BlkFeature.ConfigWce) | Bit(BlkFeature.Topology) | Bit(VirtioFeature.EventIdx) | (indirect ? Bit(VirtioFeature.IndirectDesc) : 0);

    private static ulong Bit(int b) => 1UL << b;

    public static int Main(string[] args)
    {
        LoadOptions o;
        try { o = LoadOptions.Parse(args); }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(LoadOptions.Usage);
            return 2;
        }
        try { return Run(o); }
        catch (Exception e)
        {
            Console.Error.WriteLine($"BlkLoad: {e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    private static int Run(LoadOptions o)
    {
        // Rings, headers and data buffers, with room to spare.
        ulong memory = Math.Max(64UL << 20, (ulong)o.Queues * (ulong)o.Depth * (ulong)(o.BlockBytes + 4096) * 2 + (16UL << 20));
        using var fe = VhostUserFrontend.Connect(o.Socket, DeviceId.Block, memory, o.Queues, o.DirtyLog);
        var env = fe.Environment();
        var dev = VirtioDriverDevice.Probe(fe, env, Features(o.Indirect), 1, o.QueueSize, (t, f) =>
        {
            if (!VirtioFeature.Has(f, BlkFeature.Mq)) return 1;
            Span<byte> b = stackalloc byte[2];
            t.ReadConfig(BlkSpec.NumQueues, b);
            return Math.Clamp(BinaryPrimitives.ReadUInt16LittleEndian(b), (ushort)1, (ushort)o.Queues);
        });
        try
        {
            if (dev.Queues.Count < o.Queues) throw new InvalidOperationException($"the back-end has {dev.Queues.Count} queue(s), {o.Queues} asked for");
            Span<byte> cfg = stackalloc byte[8];
            dev.ReadConfig(BlkSpec.Capacity, cfg);
            ulong capacity = BinaryPrimitives.ReadUInt64LittleEndian(cfg) << BlkSpec.SectorShift;
            if (capacity < (ulong)o.BlockBytes * 16) throw new InvalidOperationException($"the disk has only {capacity} bytes");

            var control = new RunControl();
            var workers = new QueueWorker[o.Queues];
            for (int q = 0; q < o.Queues; q++)
                workers[q] = new QueueWorker(dev, q, fe.Memory.Regions[0], fe.CallFd(q)!, control, o, capacity, fe.Platform.Allocator);
            var threads = workers.Select((w, q) => new Thread(w.Run) { Name = $"blkload-q{q}", IsBackground = true }).ToArray();
            string pid = o.BackendPid.ToString(CultureInfo.InvariantCulture);
            foreach (var t in threads) t.Start();

            Thread.Sleep(TimeSpan.FromSeconds(o.WarmupSeconds));
            double backend0 = o.BackendPid > 0 ? ProcCpu.Seconds(pid) : double.NaN, self0 = ProcCpu.Seconds("self");
            long t0 = Stopwatch.GetTimestamp();
            control.Set(RunControl.Measure);
            Thread.Sleep(TimeSpan.FromSeconds(o.RuntimeSeconds));
            control.Set(RunControl.Stop);
            long t1 = Stopwatch.GetTimestamp();
            double backend1 = o.BackendPid > 0 ? ProcCpu.Seconds(pid) : double.NaN, self1 = ProcCpu.Seconds("self");
            foreach (var t in threads) t.Join();

            var failure = workers.Select(w => w.Failure).FirstOrDefault(f => f is not null);
            if (failure is not null) throw new InvalidOperationException(failure);
            var lat = new LatencyHistogram();
            foreach (var w in workers) lat.Add(w.Latency);
            long n = workers.Sum(w => w.Completed), errors = workers.Sum(w => w.Errors);
            double secs = (t1 - t0) / (double)Stopwatch.Frequency;
            double usPerTick = 1e6 / Stopwatch.Frequency;
            var inv = CultureInfo.InvariantCulture;
            Console.WriteLine(string.Format(inv,
                "RESULT label={0} pattern={1} bs={2} qd={3} queues={4} seconds={5:F2} requests={6} errors={7} iops={8:F0} mbps={9:F1} " +
                "p50_us={10:F1} p99_us={11:F1} backend_cpu_us={12:F2} loadgen_cpu_us={13:F2} dirty_log={14} dirty_pages={15}",
                o.Label.Length == 0 ? "-" : o.Label, o.Pattern.ToString().ToLowerInvariant(), o.BlockBytes, o.Depth, o.Queues, secs, n, errors,
                n / secs, n * (double)o.BlockBytes / secs / 1e6, lat.Quantile(0.50) * usPerTick, lat.Quantile(0.99) * usPerTick,
                (backend1 - backend0) * 1e6 / n, (self1 - self0) * 1e6 / n, o.DirtyLog ? "on" : "off", fe.CountDirtyPages()));
            return errors == 0 ? 0 : 3;
        }
        finally { dev.Dispose(); }
    }
}
