using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>Spec types and layouts (virtio 1.2 §2.7), EVENT_IDX arithmetic, and legacy big-endian rings.</summary>
public class SpecTests
{
    [Fact]
    public void RingStructsHaveTheirSpecSizes()
    {
        Assert.Equal(16, Unsafe.SizeOf<VirtqDesc>());
        Assert.Equal(16, Marshal.SizeOf<VirtqDesc>());
        Assert.Equal(VirtqDesc.Size, Unsafe.SizeOf<VirtqDesc>());
        Assert.Equal(8, Unsafe.SizeOf<VirtqUsedElem>());
        Assert.Equal(8, (int)Marshal.OffsetOf<VirtqDesc>(nameof(VirtqDesc.Len)));
        Assert.Equal(12, (int)Marshal.OffsetOf<VirtqDesc>(nameof(VirtqDesc.Flags)));
        Assert.Equal(14, (int)Marshal.OffsetOf<VirtqDesc>(nameof(VirtqDesc.Next)));
    }

    [Theory]
    // size, avail offset, used offset, total — the spec's legacy virtq_size() with 4096 alignment (§2.7.2).
    [InlineData(1, 16UL, 4096UL, 8192UL)]
    [InlineData(128, 2048UL, 4096UL, 8192UL)]
    [InlineData(256, 4096UL, 8192UL, 12288UL)]
    [InlineData(1024, 16384UL, 20480UL, 20480UL + 12288UL)]
    public void LegacyLayoutPutsTheUsedRingAtTheNextPage(ushort size, ulong availOff, ulong usedOff, ulong total)
    {
        const ulong baseAddr = 0x40000;
        var l = SplitRingLayout.Legacy(size, baseAddr, eventIdx: false, RingEndian.Little);
        Assert.Equal(baseAddr, l.Desc);
        Assert.Equal(baseAddr + availOff, l.Avail);
        Assert.Equal(baseAddr + usedOff, l.Used);
        Assert.Equal(0UL, l.Used % SplitRingLayout.LegacyAlign);
        Assert.Equal(total, SplitRingLayout.LegacyBytes(size));
        Assert.True(l.AvailEventAddr + 2 <= baseAddr + total);
        Assert.True(l.UsedEventAddr + 2 <= l.Used);
    }

    [Fact]
    public void RingAreaSizesAndFieldAddressesFollowTheSpec()
    {
        Assert.Equal(16UL * 256, SplitRingLayout.DescBytes(256));
        Assert.Equal(6UL + 2 * 256, SplitRingLayout.AvailBytes(256));
        Assert.Equal(6UL + 8 * 256, SplitRingLayout.UsedBytes(256));
        var l = new SplitRingLayout(8, 0x1000, 0x2000, 0x3000, true, RingEndian.Little);
        Assert.Equal(0x2002UL, l.AvailIdxAddr);
        Assert.Equal(0x2004UL + 2 * 5, l.AvailRingAddr(5));
        Assert.Equal(0x2004UL + 2 * 8, l.UsedEventAddr);
        Assert.Equal(0x3002UL, l.UsedIdxAddr);
        Assert.Equal(0x3004UL + 8 * 7, l.UsedRingAddr(7));
        Assert.Equal(0x3004UL + 8 * 8, l.AvailEventAddr);
        Assert.Equal(0x1000UL + 16 * 3, l.DescAddr(3));
    }

    [Fact]
    public void LegacyLayoutWithSmallerAlignment()
    {
        var l = SplitRingLayout.Legacy(64, 0, false, RingEndian.Little, align: 64);
        Assert.Equal(1024UL, l.Avail);
        Assert.Equal(SplitRingLayout.AlignUp(1024 + 6 + 128, 64), l.Used);
        Assert.Equal(1216UL + SplitRingLayout.AlignUp(6 + 8 * 64, 64), SplitRingLayout.LegacyBytes(64, 64));
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, false)]
    [InlineData(256, true)]
    [InlineData(32768, true)]
    [InlineData(65536, false)]
    [InlineData(-4, false)]
    public void QueueSizeMustBeAPowerOfTwoUpTo32768(int size, bool valid) =>
        Assert.Equal(valid, SplitRingLayout.IsValidSize(size));

    [Theory]
    // eventIdx, newIdx, oldIdx, notify?
    [InlineData(0, 1, 0, true)]            // the peer wants to hear about entry 0, which was just published
    [InlineData(4, 10, 0, true)]           // event inside (old, new]
    [InlineData(9, 10, 0, true)]           // the last one published
    [InlineData(10, 10, 0, false)]         // not yet reached
    [InlineData(3, 10, 5, false)]          // already passed before this batch: notified then
    [InlineData(5, 10, 5, true)]           // exactly the first of this batch
    [InlineData(0xFFFF, 1, 0xFFFE, true)]  // across the 16-bit wrap
    [InlineData(1, 1, 0xFFFE, false)]
    [InlineData(0xFFFD, 1, 0xFFFE, false)]
    [InlineData(7, 7, 7, false)]           // nothing new: never notify
    public void NeedEventMatchesTheSpecFormula(int eventIdx, int newIdx, int oldIdx, bool expected) =>
        Assert.Equal(expected, EventIdx.NeedEvent((ushort)eventIdx, (ushort)newIdx, (ushort)oldIdx));

    [Fact]
    public void NeedEventIsTrueForExactlyTheIndexesPublishedInTheBatch()
    {
        var rng = new Random(3);
        for (int i = 0; i < 2000; i++)
        {
            ushort old = (ushort)rng.Next(65536);
            ushort added = (ushort)rng.Next(1, 300);
            ushort now = (ushort)(old + added);
            ushort ev = (ushort)(old + rng.Next(-400, 400));
            bool inBatch = (ushort)(ev - old) < added;
            Assert.Equal(inBatch, EventIdx.NeedEvent(ev, now, old));
        }
    }

    [Fact]
    public void RingEndianConvertsOnlyForTheNonNativeOrder()
    {
        var native = BitConverter.IsLittleEndian ? RingEndian.Little : RingEndian.Big;
        var foreign = BitConverter.IsLittleEndian ? RingEndian.Big : RingEndian.Little;
        Assert.True(native.IsNative);
        Assert.Equal((ushort)0x1234, native.Fix((ushort)0x1234));
        Assert.Equal((ushort)0x3412, foreign.Fix((ushort)0x1234));
        Assert.Equal(0x78563412u, foreign.Fix(0x12345678u));
        var d = new VirtqDesc(0x1122334455667788, 0x10, DescFlags.Next | DescFlags.Write, 5);
        var swapped = d.WithEndian(foreign);
        Assert.Equal(0x8877665544332211UL, swapped.Addr);
        Assert.Equal((ushort)0x0300, swapped.Flags);
        Assert.Equal(d, swapped.WithEndian(foreign));
    }

    [Fact]
    public void FeatureNamesParseAndDescribe()
    {
        Assert.True(VirtioFeature.TryParse("VERSION_1, virtio_f_access_platform|29", out ulong f, out var err));
        Assert.Null(err);
        Assert.Equal(VirtioFeature.Bit(32) | VirtioFeature.Bit(33) | VirtioFeature.Bit(29), f);
        Assert.Equal("EVENT_IDX|VERSION_1|ACCESS_PLATFORM", VirtioFeature.Describe(f));
        Assert.False(VirtioFeature.TryParse("NOPE", out _, out err));
        Assert.Contains("NOPE", err);
        Assert.Equal("BLK_FLUSH", VirtioFeature.Name(BlkFeature.Flush, DeviceId.Block));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void BigEndianLegacyRingRoundTrips(bool eventIdx, bool indirect)
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        var options = new QueueOptions
        {
            Endian = RingEndian.Big, LegacyAlign = SplitRingLayout.LegacyAlign, EventIdx = eventIdx, IndirectDesc = indirect,
        };
        using var q = new QueuePair(rig, 16, options);
        Assert.Equal(SplitRingLayout.Legacy(16, q.Driver.RingMemory.Bus, eventIdx, RingEndian.Big), q.Driver.DeviceLayout);

        for (int round = 0; round < 40; round++)
        {
            var req = q.AddOk([10 + round, 7], [64 + round]);
            // In memory the ring is big-endian: avail idx reads back byte-swapped.
            var idxBytes = rig.CpuRead(q.Driver.RingMemory.Gpa + (q.Driver.DeviceLayout.AvailIdxAddr - q.Driver.DeviceLayout.Desc), 2);
            Assert.Equal(round + 1, idxBytes[0] << 8 | idxBytes[1]);

            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var chain));
            Assert.Equal((ulong)(17 + round), chain!.ReadableBytes);
            Assert.Equal((ulong)(64 + round), chain.WritableBytes);
            var payload = new byte[chain.ReadableBytes];
            var reader = new ChainReader<DeviceMemory<TranslatorRef, PortRef>>(q.Device.Memory, chain);
            Assert.Equal(MemStatus.Ok, reader.Read(payload, out _));
            var writer = new ChainWriter<DeviceMemory<TranslatorRef, PortRef>>(q.Device.Memory, chain);
            Assert.Equal(MemStatus.Ok, writer.Write(Enumerable.Repeat((byte)round, 5 + round).ToArray(), out _));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(chain, writer.Written));

            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out uint len));
            Assert.Same(req, token);
            Assert.Equal((uint)(5 + round), len);
            Assert.Equal(Enumerable.Repeat((byte)round, 5 + round).ToArray(), rig.CpuRead(req.Writable[0].Gpa, 5 + round));
        }
        Assert.False(q.Driver.IsBroken || q.Device.IsBroken);
        Assert.Equal(0, rig.Ops.Stats.Outstanding);
    }

    [Fact]
    public void EndianMismatchBetweenDriverAndDeviceIsCaughtNotFollowed()
    {
        // A big-endian driver and a device that assumes little-endian: the avail idx 1 reads as 256, too far ahead.
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 16, new QueueOptions { Endian = RingEndian.Big });
        var device = new DeviceQueue<DeviceMemory<TranslatorRef, PortRef>>(rig.Device.Memory,
            q.Driver.DeviceLayout with { Endian = RingEndian.Little }, new QueueOptions());
        q.AddOk([8], []);
        Assert.Equal(QueueStatus.Broken, device.Pop(out _));
        Assert.Equal(QueueError.AvailIndexTooFarAhead, device.Error);
    }
}
