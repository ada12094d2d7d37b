using System.Diagnostics.Metrics;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Dma;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Diagnostics;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// The meters report what really happened in a vhost-user session (in-process back-end and front-end,
/// <see cref="VhostDeviceRig"/>): a <see cref="MeterListener"/> subscribed to exactly this test's meters reads the
/// observable instruments and the latency histogram after known I/O.
/// </summary>
public sealed class MetricsTests
{
    private const int Len = 4096;

    /// <summary>Every measurement of this test's meters: (instrument, sorted tags) → last value, and histogram values.</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        public readonly Dictionary<string, double> Last = [];
        public readonly List<(string Name, double Value, string Tags)> Recorded = [];

        public Recorder(params Meter[] meters)
        {
            _listener.InstrumentPublished = (i, l) => { if (meters.Contains(i.Meter)) l.EnableMeasurementEvents(i); };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<int>((i, v, tags, _) => Add(i, v, tags));
            _listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Add(i, v, tags));
            _listener.Start();
        }

        private void Add(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var t = string.Join(",", tags.ToArray().Select(kv => $"{kv.Key}={kv.Value}").Order());
            lock (this)
            {
                if (i.IsObservable) Last[$"{i.Name}{{{t}}}"] = v;
                else Recorded.Add((i.Name, v, t));
            }
        }

        public double Get(string key) =>
            Last.TryGetValue(key, out var v) ? v : throw new Xunit.Sdk.XunitException($"no measurement {key}; have: {string.Join(", ", Last.Keys)}");

        public void Collect() => _listener.RecordObservableInstruments();
        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public void BlockAndVhostMetersReportTheSessionsRequestsBytesLatencyAndRingCounters()
    {
        const int n = 8;
        var backend = new MemoryBackend(1 << 20);
        var dev = new BlockDevice<RMem>(backend, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var blk = BlockDeviceMetrics.Create(dev, "test-image");
        using var vhost = VhostUserMetrics.Create(rig.Server);
        using var rec = new Recorder(blk.Meter, vhost.Meter);
        using (var fe = rig.Connect())
        using (var drv = BlkDriver.Probe(fe, fe.Environment()))
        {
            ulong area = fe.Platform.Allocator.Allocate(n * Len);
            var writes = Enumerable.Range(0, n).Select(i => drv.Submit(BlkRequestType.Out, (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * Len), Len)])).ToList();
            Assert.True(drv.WaitAll());
            var reads = Enumerable.Range(0, n).Select(i => drv.Submit(BlkRequestType.In, (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * Len), Len)])).ToList();
            Assert.True(drv.WaitAll());
            Assert.All(writes.Concat(reads), r => Assert.Equal(BlkStatus.Ok, r.Status));

            rec.Collect();   // while connected: live ring counters of the current connection count too
            Assert.Equal(n, rec.Get("virtio.blk.requests{queue=0,type=write}"));
            Assert.Equal(n, rec.Get("virtio.blk.requests{queue=0,type=read}"));
            Assert.Equal(n * Len, rec.Get("virtio.blk.bytes{direction=write,queue=0}"));
            Assert.Equal(n * Len, rec.Get("virtio.blk.bytes{direction=read,queue=0}"));
            Assert.Equal(0, rec.Get("virtio.blk.errors{kind=io,queue=0}"));
            Assert.Equal(0, rec.Get("virtio.blk.queue.depth{queue=0}"));
            Assert.Equal(1, rec.Get("vhost_user.connections{}"));
            Assert.Equal(1, rec.Get("vhost_user.connections.active{}"));
            Assert.True(rec.Get("vhost_user.kicks{}") > 0, "no kicks counted while the ring runs");
            Assert.True(rec.Get("vhost_user.interrupts{}") > 0, "no interrupts counted");
            Assert.InRange(rec.Get("vhost_user.interrupts.suppressed{}"), 0, n * 2);   // published (how many depends on timing)
            Assert.True(rec.Get("vhost_user.messages{}") > 0, "no messages counted");
            Assert.Equal(0, rec.Get("vhost_user.errors{kind=protocol}"));
        }
        // One latency per request, tagged with its type, each a real duration.
        lock (rec)
        {
            var latencies = rec.Recorded.Where(r => r.Name == "virtio.blk.request.duration").ToList();
            Assert.Equal(n, latencies.Count(r => r.Tags == "type=write"));
            Assert.Equal(n, latencies.Count(r => r.Tags == "type=read"));
            Assert.All(latencies, r => Assert.InRange(r.Value, double.Epsilon, 60));
        }
        // The connection ends: the server's totals keep what it counted; a new connection is a reconnect.
        WaitFor(() => { rec.Collect(); return rec.Get("vhost_user.connections.active{}") == 0; });
        Assert.True(rec.Get("vhost_user.kicks{}") > 0, "the ended connection's kicks were lost");
        Assert.Equal(0, rec.Get("vhost_user.reconnects{}"));
        using (var fe = rig.Connect())
        using (BlkDriver.Probe(fe, fe.Environment()))
        {
            rec.Collect();
            Assert.Equal(1, rec.Get("vhost_user.reconnects{}"));
        }
        Assert.Empty(rig.ResetLines);
    }

    /// <summary>A daemon with several sockets has one VhostUser meter per socket under one name: the socket tag tells them apart.</summary>
    [Fact]
    public void VhostMetersOfSeveralSocketsAreToldApartByTheirSocketTag()
    {
        using var rigA = new VhostDeviceRig(new EntropyDevice<RMem>(offerAccessPlatform: false));
        using var rigB = new VhostDeviceRig(new EntropyDevice<RMem>(offerAccessPlatform: false));
        using var a = VhostUserMetrics.Create(rigA.Server, socket: "/run/a.sock");
        using var b = VhostUserMetrics.Create(rigB.Server, socket: "/run/b.sock");
        using var rec = new Recorder(a.Meter, b.Meter);
        using (var fe = rigA.Connect())
        using (EntropyDriver.Probe(fe, fe.Environment()))
        {
            rec.Collect();
            Assert.Equal(1, rec.Get("vhost_user.connections.active{socket=/run/a.sock}"));
            Assert.Equal(0, rec.Get("vhost_user.connections.active{socket=/run/b.sock}"));
            Assert.Equal(0, rec.Get("vhost_user.errors{kind=protocol,socket=/run/b.sock}"));
            Assert.True(rec.Get("vhost_user.messages{socket=/run/a.sock}") > 0);
            Assert.Equal(0, rec.Get("vhost_user.messages{socket=/run/b.sock}"));
        }
    }

    [Fact]
    public void EntropyMeterCountsTheBytesTheDriverRead()
    {
        var dev = new EntropyDevice<RMem>(offerAccessPlatform: true);
        using var rig = new VhostDeviceRig(dev);
        using var rng = EntropyDeviceMetrics.Create(dev);
        using var rec = new Recorder(rng.Meter);
        using (var fe = rig.Connect())
        using (var drv = EntropyDriver.Probe(fe, fe.Environment()))
        {
            var buf = new byte[3000];
            for (int got = 0; got < buf.Length;)
            {
                int n = drv.Read(buf.AsSpan(got));
                Assert.True(n > 0, "the driver read nothing");
                got += n;
            }
        }
        rec.Collect();
        Assert.Equal(dev.BytesServed, rec.Get("virtio.rng.bytes{}"));
        Assert.True(rec.Get("virtio.rng.bytes{}") >= 3000, $"rng bytes {rec.Get("virtio.rng.bytes{}")}");
        Assert.True(rec.Get("virtio.rng.requests{}") > 0);
    }

    /// <summary>
    /// The driver side: a bounce-only front-end (its RAM private, only a window shared) copies every buffer through the
    /// pool, and the DMA meter reports those bytes by direction, the maps and the pool's high-water mark.
    /// </summary>
    [Fact]
    public void DmaMeterReportsBouncedBytesMapsAndThePoolHighWater()
    {
        using var rig = new VhostRig(4 << 20);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block,
            new VhostUserFrontendOptions { MemorySize = 16 << 20, SharedWindowSize = 2 << 20, BouncePoolSize = 1 << 20 });
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        using var dma = DmaMetrics.Create(drv.Device.Dma, "blk0", fe.BouncePool);
        using var rec = new Recorder(dma.Meter);
        var data = new byte[256 * 1024];
        new Random(3).NextBytes(data);
        Assert.Equal(BlkStatus.Ok, drv.Write(0, data));
        var back = new byte[data.Length];
        Assert.Equal(BlkStatus.Ok, drv.Read(0, back));
        Assert.Equal(data, back);

        rec.Collect();
        const string Tags = "device=blk0,ops=bounce";
        var st = drv.Device.Dma.Stats;
        // Tags sort by key: device, direction, ops.
        Assert.Equal(st.BounceBytesIn, rec.Get("virtio.dma.bounce.bytes{device=blk0,direction=to-device,ops=bounce}"));
        Assert.Equal(st.BounceBytesOut, rec.Get("virtio.dma.bounce.bytes{device=blk0,direction=from-device,ops=bounce}"));
        Assert.True(rec.Get("virtio.dma.bounce.bytes{device=blk0,direction=to-device,ops=bounce}") >= data.Length, "the written data was not bounced to the device");
        Assert.True(rec.Get("virtio.dma.bounce.bytes{device=blk0,direction=from-device,ops=bounce}") >= data.Length, "the read data was not bounced back");
        Assert.Equal(st.Maps, rec.Get($"virtio.dma.maps{{{Tags}}}"));
        Assert.True(st.Maps > 0);
        Assert.Equal(0, rec.Get($"virtio.dma.map_errors{{{Tags}}}"));
        Assert.Equal(st.Outstanding, rec.Get($"virtio.dma.mappings.outstanding{{{Tags}}}"));
        Assert.InRange(rec.Get($"virtio.dma.bounce.slots.high_water{{{Tags}}}"), 1, fe.BouncePool!.Slots);
        Assert.Equal(fe.BouncePool.SlotsInUse, rec.Get($"virtio.dma.bounce.slots.in_use{{{Tags}}}"));
    }

    /// <summary>
    /// The net meter on the simulated machine: a loopback port echoes every frame, so after n frames of known size the
    /// meter shows n packets and their bytes each way on queue pair 0, a short frame as a tx drop, and the link up.
    /// </summary>
    [Fact]
    public void NetMeterCountsPacketsBytesAndDropsPerQueuePair()
    {
        const int n = 10, size = 300;
        using var sim = new SimRig(DmaMode.Direct);
        var port = new MemoryNetPort(loopback: true);
        var dev = new NetDevice<DeviceMemory<TranslatorRef, PortRef>>([port], new NetDeviceOptions { QueueSize = 64 });
        sim.Add(dev, SimTransport.Pci);
        using var net = NetDeviceMetrics.Create(dev, "vnet0");
        using var rec = new Recorder(net.Meter);
        using (var drv = NetDriver.Probe(sim.DriverTransport(), sim.Environment()))
        {
            var frame = new byte[size];
            new Random(5).NextBytes(frame);
            for (int i = 0; i < n; i++)
            {
                Assert.True(drv.Send(frame));
                Assert.Equal(frame, drv.Receive().Frame);
            }
            Assert.True(drv.Send(new byte[6]));   // shorter than an Ethernet header: dropped and counted
            Assert.True(drv.WaitForTransmits());
            rec.Collect();
        }
        Assert.Equal(n, rec.Get("virtio.net.packets{device=vnet0,direction=tx,queue_pair=0}"));
        Assert.Equal(n, rec.Get("virtio.net.packets{device=vnet0,direction=rx,queue_pair=0}"));
        Assert.Equal(n * size, rec.Get("virtio.net.bytes{device=vnet0,direction=tx,queue_pair=0}"));
        Assert.Equal(n * size, rec.Get("virtio.net.bytes{device=vnet0,direction=rx,queue_pair=0}"));
        Assert.Equal(1, rec.Get("virtio.net.dropped{device=vnet0,direction=tx,reason=short}"));
        Assert.Equal(0, rec.Get("virtio.net.dropped{device=vnet0,direction=rx,reason=lost}"));
        Assert.Equal(1, rec.Get("virtio.net.link.up{device=vnet0}"));
    }

    /// <summary>A listener that is not enabled for the histogram costs the hot path nothing: no clock read per request.</summary>
    [Fact]
    public void WithoutAListenerRequestsAreNotTimed()
    {
        var backend = new MemoryBackend(1 << 20);
        var dev = new BlockDevice<RMem>(backend, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var blk = BlockDeviceMetrics.Create(dev);
        using (var fe = rig.Connect())
        using (var drv = BlkDriver.Probe(fe, fe.Environment()))
        {
            ulong area = fe.Platform.Allocator.Allocate(Len);
            drv.Submit(BlkRequestType.Out, 0, [new BufferSegment(area, Len)]);
            Assert.True(drv.WaitAll());
        }
        Assert.False(dev.Latency!.Enabled);
        Assert.All(dev.QueueStates[0].Slots, s => Assert.Equal(0, s.Started));
        blk.Dispose();
        Assert.Null(dev.Latency);
    }

    /// <summary>
    /// The latency histogram costs a listened-to device no allocation per request: on the simulated machine the device
    /// runs on the test thread, so this thread's allocations per request (the driver's own included) must not grow
    /// when a listener enables the histogram. Allocations are counted, not timed.
    /// </summary>
    [Fact]
    public void TheLatencyHistogramAllocatesNothingPerRequest()
    {
        using var rig = new SimRig(DmaMode.Direct);
        var dev = new BlockDevice<DeviceMemory<TranslatorRef, PortRef>>(new MemoryBackend(1 << 20), new BlockDeviceOptions());
        rig.Add(dev, SimTransport.Pci);
        using var blk = BlockDeviceMetrics.Create(dev);
        using var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment());
        ulong area = rig.Platform.Allocator.Allocate(Len);
        BufferSegment[] data = [new BufferSegment(area, Len)];
        long PerRequest()
        {
            const int Rounds = 64, Batch = 16;
            for (int i = 0; i < Batch; i++) drv.Submit(BlkRequestType.Out, 0, data);   // warm up
            Assert.True(drv.WaitAll());
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int r = 0; r < Rounds; r++)
            {
                for (int i = 0; i < Batch; i++) drv.Submit(BlkRequestType.Out, (ulong)(i * 8), data);
                Assert.True(drv.WaitAll());
            }
            return (GC.GetAllocatedBytesForCurrentThread() - before) / (Rounds * Batch);
        }
        long without = PerRequest();
        long recorded = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (i, l) => { if (i.Meter == blk.Meter && i.Name == "virtio.blk.request.duration") l.EnableMeasurementEvents(i); },
        };
        listener.SetMeasurementEventCallback<double>((_, _, _, _) => recorded++);
        listener.Start();
        long with = PerRequest();
        Assert.True(recorded >= 64 * 16, $"only {recorded} latencies recorded");
        Assert.True(with <= without, $"{with} B per request with the histogram listened to, {without} B without");
    }

    private static void WaitFor(Func<bool> cond)
    {
        var end = DateTime.UtcNow.AddSeconds(10);
        while (!cond())
        {
            Assert.True(DateTime.UtcNow < end, "condition not reached within 10 s");
            Thread.Sleep(10);
        }
    }
}
