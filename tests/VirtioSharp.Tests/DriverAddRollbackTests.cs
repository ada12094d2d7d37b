using VirtioSharp.Dma;
using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// A driver add whose mapping fails part way: every mapping already made is undone and the ring is unchanged, whatever
/// the ops and whether the chain would have been indirect.
/// </summary>
public class DriverAddRollbackTests
{
    private sealed record Snapshot(long Mappings, long MapErrors, int SlotsInUse, int IovaPages, int FreeDescriptors, int Outstanding);

    private static Snapshot Take(QueuePair q) => new(
        q.Rig.Ops.Stats.Outstanding, q.Rig.Ops.Stats.MapErrors, q.Rig.Pool?.SlotsInUse ?? 0,
        q.Rig.IovaPagesInUse(), q.Driver.FreeDescriptors, q.Driver.Outstanding);

    /// <summary>Adds a failing chain and checks the rollback; one good chain is outstanding before and after.</summary>
    private static void AssertRolledBack(QueuePair q, int[] readable, int[] writable, DmaStatus expected,
        Action<QueuePair>? spoil = null)
    {
        var good = q.AddOk([100], [200]);
        var before = Take(q);
        QueueStatus st;
        DmaStatus dma;
        if (spoil is null) st = q.Add(readable, writable, out _, out dma);
        else
        {
            // A segment outside RAM: the last writable buffer points past the end of guest memory.
            var ok = readable.Select(l => new BufferSegment(q.Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray();
            var w = writable.Select(l => new BufferSegment(q.Rig.AllocBuffer(l, 0, new byte[l]), (uint)l)).ToArray();
            w[^1] = new BufferSegment(q.Rig.Platform.Options.RamSize - 16, 4096);
            st = q.Driver.Add(ok, w, new object(), out dma);
        }
        Assert.Equal(QueueStatus.MapFailed, st);
        Assert.Equal(expected, dma);
        var after = Take(q);
        Assert.Equal(before with { MapErrors = before.MapErrors + 1 }, after);

        // The device sees the good chain and nothing else.
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var chain));
        Assert.Equal(100UL, chain!.ReadableBytes);
        Assert.Equal(QueueStatus.Empty, q.Device.Pop(out _));
        Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(chain, 0));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out _));
        Assert.Same(good, token);
        q.Rig.AssertNoLeaksOrFaults(q.RingIovaPages);
    }

    public static TheoryData<DmaMode, bool> ModesAndIndirect()
    {
        var d = new TheoryData<DmaMode, bool>();
        foreach (var m in Enum.GetValues<DmaMode>()) { d.Add(m, false); d.Add(m, true); }
        return d;
    }

    [Theory]
    [MemberData(nameof(ModesAndIndirect))]
    public void BufferOutsideRamUndoesEveryMapping(DmaMode mode, bool indirect)
    {
        using var rig = DmaRig.Create(mode);
        using var q = new QueuePair(rig, 16, new QueueOptions { IndirectDesc = indirect });
        AssertRolledBack(q, [300, 5000, 64], [4096, 128, 1], DmaStatus.BadAddress, spoil: _ => { });
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BouncePoolExhaustedUndoesEveryMapping(bool indirect)
    {
        // 16 slots of 2 KiB; the good chain takes 2, the failing one asks for 6 + 10.
        using var rig = DmaRig.Create(DmaMode.Bounce, bouncePoolSize: 16 * BouncePool.SlotSize);
        using var q = new QueuePair(rig, 8, new QueueOptions { IndirectDesc = indirect });
        AssertRolledBack(q, [4096, 4096, 4096], [20480], DmaStatus.Exhausted);
        Assert.True(rig.Platform.BouncePool!.Failures > 0);
    }

    [Fact]
    public void OversizedBounceMappingUndoesEveryMapping()
    {
        using var rig = DmaRig.Create(DmaMode.Bounce);
        using var q = new QueuePair(rig, 8);
        AssertRolledBack(q, [512, 512], [(int)rig.Ops.MaxMappingSize + 1], DmaStatus.TooLarge);
    }

    [Theory]
    [InlineData(DmaMode.Direct)]
    [InlineData(DmaMode.IommuStrict)]
    [InlineData(DmaMode.Bounce)]
    public void ZeroLengthSegmentUndoesEveryMapping(DmaMode mode)
    {
        using var rig = DmaRig.Create(mode);
        using var q = new QueuePair(rig, 8);
        var before = Take(q);
        var seg = new BufferSegment(rig.AllocBuffer(64, 0, new byte[64]), 64);
        Assert.Equal(QueueStatus.MapFailed, q.Driver.Add([seg], [new BufferSegment(seg.Gpa, 0)], new object(), out var dma));
        Assert.Equal(DmaStatus.Empty, dma);
        Assert.Equal(before with { MapErrors = before.MapErrors + 1 }, Take(q));
        Assert.Equal(QueueStatus.Empty, q.Device.Pop(out _));
    }

    [Fact]
    public void StrictIommuReleasesTheFailedChainsIovasImmediately()
    {
        using var rig = DmaRig.Create(DmaMode.IommuStrict);
        using var q = new QueuePair(rig, 8);
        int pages = rig.Iommu!.IovaPagesInUse;
        var segs = new[] { new BufferSegment(rig.AllocBuffer(8192, 0, new byte[8192]), 8192), new BufferSegment(rig.Platform.Options.RamSize, 8) };
        Assert.Equal(QueueStatus.MapFailed, q.Driver.Add(segs, [], new object(), out var dma));
        Assert.Equal(DmaStatus.BadAddress, dma);
        Assert.Equal(pages, rig.Iommu.IovaPagesInUse);
        Assert.Equal(0, rig.Iommu.PendingInvalidations);
        Assert.Equal(0, rig.Device.Domain!.MappedPages - q.RingIovaPages);
    }
}
