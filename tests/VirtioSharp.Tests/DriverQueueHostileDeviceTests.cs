using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// The driver side fed a hostile device's used ring: used elements and used idx written straight into the ring's memory.
/// Each rule breaks the queue with its error, keeps every mapping (the device may still be using the buffers) and stays
/// broken until <see cref="DriverQueue.DetachUnused"/>.
/// </summary>
public class DriverQueueHostileDeviceTests
{
    private static void AssertBroken(QueuePair q, QueueError expected, long mappingsBefore, int outstandingBefore)
    {
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out var token, out uint len));
        Assert.Null(token);
        Assert.Equal(0u, len);
        Assert.Equal(expected, q.Driver.Error);
        Assert.True(q.Driver.IsBroken);
        Assert.False(string.IsNullOrEmpty(q.Driver.ErrorDetail));
        // Nothing was detached or unmapped on the device's say-so.
        Assert.Equal(mappingsBefore, q.Rig.Ops.Stats.Outstanding);
        Assert.Equal(outstandingBefore, q.Driver.Outstanding);
        // Sticky.
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out _, out _));
        Assert.False(q.Driver.HasUsed);
        Assert.Equal(QueueStatus.Broken, q.Add([16], [], out _, out _));
        Assert.Equal(expected, q.Driver.Error);
    }

    private static (DmaRig, QueuePair) Make(DmaMode mode = DmaMode.Direct, ushort size = 8)
    {
        var rig = DmaRig.Create(mode);
        return (rig, new QueuePair(rig, size));
    }

    [Fact]
    public void UsedIdOutOfRangeBreaks()
    {
        var (rig, q) = Make();
        using (rig) using (q)
        {
            q.AddOk([32], [64]);
            q.WriteUsedElem(0, id: 8, len: 0);
            q.WriteUsedIdx(1);
            AssertBroken(q, QueueError.UsedIdOutOfRange, 2, 1);
        }
    }

    [Fact]
    public void UsedIdNamingANonHeadDescriptorBreaks()
    {
        var (rig, q) = Make();
        using (rig) using (q)
        {
            q.AddOk([32], [64]);   // descriptors 0 (head) and 1
            q.WriteUsedElem(0, id: 1, len: 0);
            q.WriteUsedIdx(1);
            AssertBroken(q, QueueError.UsedIdNotOutstanding, 2, 1);
        }
    }

    [Fact]
    public void UsedIdReturnedTwiceBreaks()
    {
        var (rig, q) = Make(DmaMode.IommuStrict);
        using (rig) using (q)
        {
            var first = q.AddOk([32], [64]);
            q.AddOk([16], [16]);
            // The device returns the first chain properly...
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var chain));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(chain!, 10));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out uint len));
            Assert.Same(first, token);
            Assert.Equal(10u, len);
            // ...then returns the same head again.
            q.WriteUsedElem(1, id: chain!.Head, len: 10);
            q.WriteUsedIdx(2);
            AssertBroken(q, QueueError.UsedIdNotOutstanding, 2, 1);
        }
    }

    [Fact]
    public void UsedLengthLargerThanWritableBytesBreaks()
    {
        var (rig, q) = Make();
        using (rig) using (q)
        {
            q.AddOk([32], [40, 60]);
            q.WriteUsedElem(0, id: 0, len: 101);
            q.WriteUsedIdx(1);
            AssertBroken(q, QueueError.UsedLengthTooLarge, 3, 1);
        }
    }

    [Fact]
    public void UsedLengthEqualToWritableBytesIsAccepted()
    {
        var (rig, q) = Make();
        using (rig) using (q)
        {
            var r = q.AddOk([32], [40, 60]);
            q.WriteUsedElem(0, id: 0, len: 100);
            q.WriteUsedIdx(1);
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out uint len));
            Assert.Same(r, token);
            Assert.Equal(100u, len);
            Assert.Equal(0, rig.Ops.Stats.Outstanding);
        }
    }

    [Fact]
    public void UsedLengthOnReadOnlyChainBreaks()
    {
        var (rig, q) = Make();
        using (rig) using (q)
        {
            q.AddOk([32], []);
            q.WriteUsedElem(0, id: 0, len: 1);
            q.WriteUsedIdx(1);
            AssertBroken(q, QueueError.UsedLengthTooLarge, 1, 1);
        }
    }

    [Fact]
    public void UsedIdxMoreThanQueueSizeAheadBreaks()
    {
        var (rig, q) = Make(size: 8);
        using (rig) using (q)
        {
            q.AddOk([32], [64]);
            q.WriteUsedElem(0, id: 0, len: 0);
            q.WriteUsedIdx(9);
            AssertBroken(q, QueueError.UsedIndexTooFarAhead, 2, 1);
        }
    }

    [Fact]
    public void BrokenDriverQueueStaysBrokenUntilDetachUnusedThenWorksAgain()
    {
        var (rig, q) = Make(DmaMode.IommuStrict);
        using (rig) using (q)
        {
            var a = q.AddOk([32], [64]);
            var b = q.AddOk([48], []);
            q.WriteUsedElem(0, id: 7, len: 0);   // not outstanding
            q.WriteUsedIdx(1);
            AssertBroken(q, QueueError.UsedIdNotOutstanding, 3, 2);

            // The device now behaves: still broken.
            q.WriteUsedElem(0, id: 0, len: 0);
            Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out _, out _));

            var tokens = q.Driver.DetachUnused();
            Assert.Equal(2, tokens.Count);
            Assert.Contains(a, tokens);
            Assert.Contains(b, tokens);
            Assert.False(q.Driver.IsBroken);
            Assert.Equal(QueueError.None, q.Driver.Error);
            Assert.Equal(0, q.Driver.Outstanding);
            Assert.Equal(q.Driver.Size, q.Driver.FreeDescriptors);
            Assert.Equal(0, rig.Ops.Stats.Outstanding);
            Assert.Equal(q.RingIovaPages, rig.IovaPagesInUse());

            // After the device is reset too, the queue works again.
            q.Device.Reset();
            var c = q.AddOk([8], [8]);
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var chain));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(chain!, 8));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out uint len));
            Assert.Same(c, token);
            Assert.Equal(8u, len);
        }
    }
}
