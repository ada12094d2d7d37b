using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// Premapped buffers (Linux's premapped virtqueue mode): the driver maps a pool once with the device's DMA ops and adds
/// chains of those mappings; the queue syncs them for the device on add and for the CPU on use, never unmaps them, and
/// keeps its own copy of each record. In every DMA mode, split and packed.
/// </summary>
public class PremappedQueueTests
{
    public static TheoryData<DmaMode, bool> Modes()
    {
        var d = new TheoryData<DmaMode, bool>();
        foreach (var m in new[] { DmaMode.Direct, DmaMode.IommuStrict, DmaMode.IommuLazy, DmaMode.Bounce, DmaMode.NonCoherent })
            foreach (bool packed in new[] { false, true }) d.Add(m, packed);
        return d;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void PremappedPoolIsReusedAcrossChainsAndNeverUnmappedByTheQueue(DmaMode mode, bool packed)
    {
        using var rig = DmaRig.Create(mode);
        var options = new QueueOptions { Packed = packed };
        using var drv = rig.CreateDriver(8, options);
        var dev = rig.CreateDevice(drv, options);
        const int Buf = 1024, Count = 4;
        // The pool: Count receive buffers (device writes) and one header (device reads), each mapped once.
        ulong pool = rig.AllocBuffer(Buf * (Count + 1), 0, new byte[Buf * (Count + 1)]);
        var rx = new DmaMapping[Count];
        for (int i = 0; i < Count; i++)
            Assert.Equal(DmaStatus.Ok, drv.Dma.Map(pool + (ulong)(i * Buf), Buf, DmaDirection.FromDevice, out rx[i]));
        Assert.Equal(DmaStatus.Ok, drv.Dma.Map(pool + Count * Buf, 16, DmaDirection.ToDevice, out var hdr));
        long mapsBefore = drv.Dma.Stats.Maps, unmapsBefore = drv.Dma.Stats.Unmaps;

        for (int round = 0; round < 5; round++)
        {
            for (int i = 0; i < Count; i++)
            {
                byte[] header = [(byte)round, (byte)i, 0xAB, 0xCD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
                rig.Platform.Cpu.Write(pool + Count * Buf, header);
                Assert.Equal(QueueStatus.Ok, drv.AddPremapped([hdr], [rx[i]], i, out var st));
                Assert.Equal(DmaStatus.Ok, st);
                // The device reads the header and fills the buffer through its own address space.
                Assert.Equal(QueueStatus.Ok, dev.Pop(out var chain));
                var got = new byte[16];
                var r = new ChainReader<VirtioSharp.Memory.DeviceMemory<VirtioSharp.Memory.TranslatorRef, VirtioSharp.Memory.PortRef>>(dev.Memory, chain!);
                Assert.Equal(Memory.MemStatus.Ok, r.Read(got, out int n));
                Assert.Equal(header, got.AsSpan(0, n).ToArray());
                var payload = Enumerable.Range(0, Buf).Select(b => (byte)(b ^ round ^ (i << 4))).ToArray();
                var w = new ChainWriter<VirtioSharp.Memory.DeviceMemory<VirtioSharp.Memory.TranslatorRef, VirtioSharp.Memory.PortRef>>(dev.Memory, chain!);
                Assert.Equal(Memory.MemStatus.Ok, w.Write(payload, out int wrote));
                Assert.Equal(Buf, wrote);
                Assert.Equal(QueueStatus.Ok, dev.AddUsed(chain!, Buf));
                Assert.Equal(QueueStatus.Ok, drv.GetUsed(out var token, out uint len));
                Assert.Equal(i, token);
                Assert.Equal((uint)Buf, len);
                // Synced for the CPU on use: the driver sees the device's bytes without unmapping.
                Assert.Equal(payload, rig.CpuRead(pool + (ulong)(i * Buf), Buf));
            }
        }
        // The queue mapped and unmapped nothing of the pool; only the driver's own calls did.
        Assert.Equal(mapsBefore, drv.Dma.Stats.Maps);
        Assert.Equal(unmapsBefore, drv.Dma.Stats.Unmaps);
        foreach (var m in rx) drv.Dma.Unmap(m);
        drv.Dma.Unmap(hdr);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MappingInTheWrongPlaceIsRefusedAndNothingIsAdded(bool packed)
    {
        using var rig = DmaRig.Create(DmaMode.IommuStrict);
        var options = new QueueOptions { Packed = packed };
        using var drv = rig.CreateDriver(8, options);
        var dev = rig.CreateDevice(drv, options);
        ulong buf = rig.AllocBuffer(4096, 0, new byte[4096]);
        Assert.Equal(DmaStatus.Ok, drv.Dma.Map(buf, 512, DmaDirection.ToDevice, out var toDevice));
        Assert.Equal(DmaStatus.Ok, drv.Dma.Map(buf + 2048, 512, DmaDirection.FromDevice, out var fromDevice));
        // A to-device mapping where the device must write, and a from-device one where it must read.
        Assert.Equal(QueueStatus.MapFailed, drv.AddPremapped([], [toDevice], 1, out var st1));
        Assert.Equal(DmaStatus.BadAddress, st1);
        Assert.Equal(QueueStatus.MapFailed, drv.AddPremapped([fromDevice], [], 2, out var st2));
        Assert.Equal(DmaStatus.BadAddress, st2);
        Assert.Equal(QueueStatus.MapFailed, drv.AddPremapped([toDevice with { Length = 0 }], [], 3, out var st3));
        Assert.Equal(DmaStatus.Empty, st3);
        Assert.Equal(QueueStatus.Empty, dev.Pop(out _));
        // Detaching an outstanding premapped chain leaves its mappings to the driver.
        Assert.Equal(QueueStatus.Ok, drv.AddPremapped([toDevice], [fromDevice], 4, out _));
        long unmaps = drv.Dma.Stats.Unmaps;
        Assert.Equal([4], drv.DetachUnused().Cast<int>());
        Assert.Equal(unmaps, drv.Dma.Stats.Unmaps);
        drv.Dma.Unmap(toDevice);
        drv.Dma.Unmap(fromDevice);
    }
}
