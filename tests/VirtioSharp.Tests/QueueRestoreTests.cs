using VirtioSharp.Queues;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>DeviceQueue.Restore / Position: the one queue-state API a back-end resumes a ring with, split and packed.</summary>
public class QueueRestoreTests
{
    [Fact]
    public void SplitRingResumesAtItsPositionAndHandsOutResubmittedHeadsFirst()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8);
        for (int i = 0; i < 3; i++) q.AddOk([], [16]);
        // A previous owner took heads 0 and 1, used nothing, then died: the new one resumes behind them.
        q.Device.Restore(new QueueRestore { Position = QueuePosition.Split(2, 0), ResubmitHeads = [1, 0] });
        Assert.Equal(QueuePosition.Split(2, 0), q.Device.Position);
        var heads = new List<ushort>();
        while (q.Device.Pop(out var c) == QueueStatus.Ok) heads.Add(c!.Head);
        Assert.Equal([1, 0, 2], heads);
        Assert.Equal(QueuePosition.Split(3, 0), q.Device.Position);
    }

    [Fact]
    public void PackedRingPositionKeepsWrapCountersAndRefusesOffsetsPastTheRing()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { Packed = true });
        var at = new QueuePosition(5, false, 3, false);
        q.Device.Restore(new QueueRestore { Position = at });
        Assert.Equal(at, q.Device.Position);
        Assert.ThrowsAny<ArgumentException>(() => q.Device.Restore(new QueueRestore { Position = new QueuePosition(8, true, 0, true) }));
    }

    [Fact]
    public void ALayoutsStateIsRefusedOnTheOtherLayout()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var split = new QueuePair(rig, 8);
        Assert.Throws<ArgumentException>(() => split.Device.Restore(new QueueRestore { ResubmitChains = [new RecordedChain(0, 0, [])] }));
        using var packed = new QueuePair(rig, 8, new QueueOptions { Packed = true });
        Assert.Throws<ArgumentException>(() => packed.Device.Restore(new QueueRestore { ResubmitHeads = [0] }));
    }
}
