using System.Buffers.Binary;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// A device that misbehaves against the generic driver core and the block driver: bad used elements written straight
/// into the ring through the device's own address space, config that never settles, FEATURES_OK cleared, queues that
/// are not there. The driver must fail with an error, never crash, and leak nothing.
/// </summary>
public class DriverCoreHostileDeviceTests
{
    public enum BadUsed { IdOutOfRange, IdReused, LengthTooLarge }

    public static TheoryData<BadUsed, DmaMode> BadUsedCases()
    {
        var d = new TheoryData<BadUsed, DmaMode>();
        foreach (var b in Enum.GetValues<BadUsed>())
            foreach (var m in new[] { DmaMode.Direct, DmaMode.IommuStrict, DmaMode.Bounce })
                d.Add(b, m);
        return d;
    }

    public static TheoryData<SimTransport, DmaMode> ProbeCases()
    {
        var d = new TheoryData<SimTransport, DmaMode>();
        foreach (var t in new[] { SimTransport.Mmio, SimTransport.Pci })
            foreach (var m in new[] { DmaMode.Direct, DmaMode.IommuStrict, DmaMode.Bounce })
                d.Add(t, m);
        return d;
    }

    private static void WriteUsed(DeviceQueue<Mem> q, int slot, uint id, uint len)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(b, id);
        BinaryPrimitives.WriteUInt32LittleEndian(b[4..], len);
        Assert.Equal(MemStatus.Ok, q.Memory.Write(q.Layout.UsedRingAddr(slot % q.Size), b));
    }

    private static void WriteUsedIdx(DeviceQueue<Mem> q, ushort idx)
    {
        Span<byte> b = stackalloc byte[2];
        BinaryPrimitives.WriteUInt16LittleEndian(b, idx);
        Assert.Equal(MemStatus.Ok, q.Memory.Write(q.Layout.UsedIdxAddr, b));
    }

    private static (uint Id, uint Len) ReadUsed(DeviceQueue<Mem> q, int slot)
    {
        Span<byte> b = stackalloc byte[8];
        Assert.Equal(MemStatus.Ok, q.Memory.Read(q.Layout.UsedRingAddr(slot % q.Size), b));
        return (BinaryPrimitives.ReadUInt32LittleEndian(b), BinaryPrimitives.ReadUInt32LittleEndian(b[4..]));
    }

    /// <summary>A block device that answers the first request with a used element the driver must reject.</summary>
    private static DelegatingDevice<Mem> Hostile(BlockDevice<Mem> real, BadUsed kind)
    {
        var dev = new DelegatingDevice<Mem>(real);
        bool done = false;
        dev.OnNotify = (ctx, qi) =>
        {
            var q = ctx.Queues[qi]!;
            if (done) { real.QueueNotify(qi); return; }
            done = true;
            switch (kind)
            {
                case BadUsed.IdOutOfRange:
                    Assert.Equal(QueueStatus.Ok, q.Pop(out _));
                    WriteUsed(q, q.NextUsed, id: (uint)q.Size + 3, len: 0);
                    WriteUsedIdx(q, (ushort)(q.NextUsed + 1));
                    break;
                case BadUsed.IdReused:
                {
                    real.QueueNotify(qi);   // answered properly...
                    var (id, len) = ReadUsed(q, q.NextUsed - 1);
                    WriteUsed(q, q.NextUsed, id, len);   // ...then the same head returned again
                    WriteUsedIdx(q, (ushort)(q.NextUsed + 1));
                    break;
                }
                default:
                {
                    real.QueueNotify(qi);
                    var (id, _) = ReadUsed(q, q.NextUsed - 1);
                    WriteUsed(q, q.NextUsed - 1, id, len: 1u << 20);   // claims 1 MiB written into a 1-byte status
                    break;
                }
            }
        };
        return dev;
    }

    [Theory, MemberData(nameof(BadUsedCases))]
    public void BadUsedElementBreaksTheQueueAndFailsTheOperation(BadUsed kind, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var disk = new MemoryBackend(1 << 20);
        var real = new BlockDevice<Mem>(disk, new BlockDeviceOptions { OfferAccessPlatform = rig.AccessPlatform });
        rig.Add(Hostile(real, kind), SimTransport.Pci);
        var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment());
        Assert.Equal(rig.ExpectedOps, drv.Device.Dma.Kind);
        var data = new byte[4096];
        new Random(1).NextBytes(data);

        var first = drv.Write(0, data);
        if (kind == BadUsed.IdReused)
        {
            // The first answer was genuine; the duplicate breaks the queue and the next operation fails.
            Assert.Equal(BlkStatus.Ok, first);
            Assert.Equal(BlkStatus.IoErr, drv.Write(8, data));
        }
        else Assert.Equal(BlkStatus.IoErr, first);

        var q = drv.Device.Queue(0);
        Assert.True(q.IsBroken);
        Assert.Equal(kind switch
        {
            BadUsed.IdOutOfRange => QueueError.UsedIdOutOfRange,
            BadUsed.IdReused => QueueError.UsedIdNotOutstanding,
            _ => QueueError.UsedLengthTooLarge,
        }, q.Error);
        Assert.False(string.IsNullOrEmpty(q.ErrorDetail));
        // Further operations fail at once instead of hanging, whatever the kind of request.
        Assert.Equal(BlkStatus.IoErr, drv.Read(0, new byte[512]));
        Assert.Equal(BlkStatus.IoErr, drv.Flush());
        // The request the device answered badly keeps its slot (the device may still use its buffers until reset), so
        // waiting for everything reports the dead device rather than hanging; a duplicate of a finished one holds nothing.
        Assert.Equal(kind == BadUsed.IdReused ? 0 : 1, drv.InFlight);
        Assert.Equal(kind == BadUsed.IdReused, drv.WaitAll());

        drv.Dispose();
        Assert.Equal(0, drv.Device.Dma.Stats.Outstanding);
        Assert.Equal(0, SimRig.IovaPagesInUse(drv.Device.Dma));
        rig.AssertNoLeaks(kind.ToString());
    }

    /// <summary>A transport whose config generation changes on every read: a device that never stops changing its config.</summary>
    private sealed class UnsettledConfig(IVirtioTransport inner) : IVirtioTransport
    {
        private byte _gen;
        public int GenerationReads { get; private set; }
        public TransportKind Kind => inner.Kind;
        public bool IsLegacy => inner.IsLegacy;
        public DeviceId DeviceId => inner.DeviceId;
        public DeviceStatus GetStatus() => inner.GetStatus();
        public void SetStatus(DeviceStatus status) => inner.SetStatus(status);
        public void Reset() => inner.Reset();
        public ulong GetFeatures() => inner.GetFeatures();
        public void SetFeatures(ulong features) => inner.SetFeatures(features);
        public ushort GetQueueMaxSize(int queue) => inner.GetQueueMaxSize(queue);
        public void SetupQueue(int queue, DriverQueue ring) => inner.SetupQueue(queue, ring);
        public void DeleteQueue(int queue) => inner.DeleteQueue(queue);
        public void Notify(int queue) => inner.Notify(queue);
        public uint ReadAndAckInterrupt() => inner.ReadAndAckInterrupt();
        public byte ConfigGeneration { get { GenerationReads++; return _gen++; } }
        public void ReadConfig(int offset, Span<byte> destination) => inner.ReadConfig(offset, destination);
        public void WriteConfig(int offset, ReadOnlySpan<byte> source) => inner.WriteConfig(offset, source);
        public ulong LegacyAlign => inner.LegacyAlign;
    }

    [Theory, MemberData(nameof(ProbeCases))]
    public void ConfigGenerationThatNeverSettlesThrowsAClearError(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        rig.Add(new BlockDevice<Mem>(new MemoryBackend(1 << 20), new BlockDeviceOptions { OfferAccessPlatform = rig.AccessPlatform }), transport);
        var t = new UnsettledConfig(rig.DriverTransport());
        var dev = VirtioDriverDevice.Probe(t, rig.Environment(), BlkDriver.DriverFeatures, 1);
        var e = Assert.Throws<VirtioProbeException>(() => dev.ReadConfig(0, new byte[8]));
        Assert.Contains("config generation never settled", e.Message);
        Assert.Contains(VirtioDriverDevice.MaxConfigRetries.ToString(), e.Message);
        Assert.Equal(2 * VirtioDriverDevice.MaxConfigRetries, t.GenerationReads);
        dev.Remove();
        rig.AssertNoLeaks("after removing the generic device");

        // The block driver reads its config at probe: the probe fails, the device is left FAILED, nothing leaks.
        var e2 = Assert.Throws<VirtioProbeException>(() => BlkDriver.Probe(new UnsettledConfig(rig.DriverTransport()), rig.Environment()));
        Assert.Contains("never settled", e2.Message);
        Assert.True(rig.Slot!.Core.Status.HasFlag(DeviceStatus.Failed), rig.Slot.Core.Status.ToString());
        Assert.False(rig.Slot.Core.Status.HasFlag(DeviceStatus.DriverOk));
        rig.AssertNoLeaks("after the failed blk probe");
    }

    [Theory, MemberData(nameof(ProbeCases))]
    public void DeviceClearingFeaturesOkFailsTheProbe(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var dev = new DelegatingDevice<Mem>(new BlockDevice<Mem>(new MemoryBackend(1 << 20), new BlockDeviceOptions { OfferAccessPlatform = rig.AccessPlatform }))
        {
            RejectFeatures = _ => "this device accepts no driver",
        };
        rig.Add(dev, transport);
        var e = Assert.Throws<VirtioProbeException>(() => BlkDriver.Probe(rig.DriverTransport(), rig.Environment()));
        Assert.Contains("cleared FEATURES_OK", e.Message);
        Assert.True(rig.Slot!.Core.Status.HasFlag(DeviceStatus.Failed));
        Assert.False(rig.Slot.Core.Status.HasFlag(DeviceStatus.FeaturesOk));
        Assert.False(rig.Slot.Core.Activated);
        Assert.Contains(rig.Slot.Core.Events, x => x.Contains("rejected: this device accepts no driver"));
        rig.AssertNoLeaks();
    }

    [Theory, MemberData(nameof(ProbeCases))]
    public void DeviceWithoutQueuesFailsTheProbeCleanly(SimTransport transport, DmaMode mode)
    {
        using var rig = new SimRig(mode);
        var dev = new DelegatingDevice<Mem>(new EntropyDevice<Mem>(offerAccessPlatform: rig.AccessPlatform)) { QueueCountOverride = 0 };
        rig.Add(dev, transport);
        var e = Assert.Throws<VirtioProbeException>(() => EntropyDriver.Probe(rig.DriverTransport(), rig.Environment()));
        Assert.Contains("has no queue 0", e.Message);
        Assert.True(rig.Slot!.Core.Status.HasFlag(DeviceStatus.Failed));
        Assert.False(rig.Slot.Core.Activated);
        rig.AssertNoLeaks();
    }

    [Theory, MemberData(nameof(ProbeCases))]
    public void MissingQueueAfterOthersWereSetUpRollsBackEverything(SimTransport transport, DmaMode mode)
    {
        // Config says 4 queues (MQ) but the transport has only 2: queues 0 and 1 are allocated, mapped and programmed
        // before queue 2 turns out to be missing.
        using var rig = new SimRig(mode);
        var dev = new DelegatingDevice<Mem>(new BlockDevice<Mem>(new MemoryBackend(1 << 20),
            new BlockDeviceOptions { NumQueues = 4, OfferAccessPlatform = rig.AccessPlatform })) { QueueCountOverride = 2 };
        rig.Add(dev, transport);
        var trace = new List<string>();
        var env = rig.Slot!.Environment(rig.Setup with { Trace = trace.Add });
        var e = Assert.Throws<VirtioProbeException>(() => BlkDriver.Probe(rig.DriverTransport(), env));
        Assert.Contains("has no queue 2", e.Message);
        Assert.Contains(trace, l => l.StartsWith("queue 1: size"));
        Assert.True(rig.Slot.Core.Status.HasFlag(DeviceStatus.Failed));
        Assert.False(rig.Slot.Core.Activated);
        rig.AssertNoLeaks();
        // The same machine still probes a good device afterwards.
        var good = new SimRig(mode);
        using (good)
        {
            good.Add(new BlockDevice<Mem>(new MemoryBackend(1 << 20), new BlockDeviceOptions { NumQueues = 4, OfferAccessPlatform = good.AccessPlatform }), transport);
            using (var drv = BlkDriver.Probe(good.DriverTransport(), good.Environment())) Assert.Equal(4, drv.NumQueues);
            good.AssertNoLeaks();
        }
    }
}
