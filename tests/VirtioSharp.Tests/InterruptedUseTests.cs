using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// A device write whose translation a ring pause cuts short (<see cref="MemStatus.Interrupted"/>, vhost-user: an IOTLB
/// miss outstanding when GET_VRING_BASE, LOG_ALL or a new memory table stops the ring) is not the driver's fault: the
/// queue stays whole. A used entry it carried waits in the queue (<see cref="DeviceQueue{TMem}.UnpublishedUsed"/>) and
/// the queue that runs the ring next publishes it first (<see cref="QueueRestore.Unpublished"/>): the driver gets every
/// completion exactly once. With an inflight log the chain instead stays in flight there, for the log to hand out again.
/// </summary>
public class InterruptedUseTests
{
    private static DeviceQueue<InterruptingMemory<DeviceMemory<TranslatorRef, PortRef>>> Device(QueuePair q, WriteInterrupter gate) =>
        new(new(q.Device.Memory, gate), q.Device.Layout, q.Options);

    [Fact]
    public void SplitUsesCutShortArePublishedTogetherByTheNextQueue()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8);
        var gate = new WriteInterrupter { From = q.Device.Layout.UsedIdxAddr, To = q.Device.Layout.UsedIdxAddr + 2 };
        var dev = Device(q, gate);
        var a = q.AddOk([], [8]);
        var b = q.AddOk([], [16]);
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var ca));
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var cb));
        gate.Armed = true;
        // Both elements are written, the used idx store that would publish them is cut short.
        Assert.Equal(QueueStatus.Ok, dev.AddUsedMany([ca!, cb!], [8u, 16u]));
        Assert.False(dev.IsBroken, dev.ErrorDetail);
        Assert.True(gate.Interrupted > 0);
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.False(dev.NeedsInterrupt());   // nothing the driver can see yet
        Assert.Equal(0, dev.NextUsed);
        Assert.Equal([new UsedElement(ca!.Head, 8, 1), new UsedElement(cb!.Head, 16, 1)], dev.UnpublishedUsed!);

        // The ring restarts on a new queue from the stopped one's position, with what it could not publish.
        gate.Armed = false;
        var next = Device(q, gate);
        next.Restore(new QueueRestore { Position = dev.Position, Unpublished = dev.UnpublishedUsed });
        Assert.True(next.NeedsInterrupt());
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var ta, out uint la));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var tb, out uint lb));
        Assert.Equal((a, 8u, b, 16u), (ta, la, tb, lb));
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.Null(next.UnpublishedUsed);

        AssertGoesOn(q, next);
    }

    /// <summary>The restored queue serves the next request normally, and the driver gets exactly that one.</summary>
    private static void AssertGoesOn<TMem>(QueuePair q, DeviceQueue<TMem> next) where TMem : struct, IDeviceMemory
    {
        var r = q.AddOk([], [4]);
        Assert.Equal(QueueStatus.Ok, next.Pop(out var chain));
        Assert.Equal(QueueStatus.Ok, next.AddUsed(chain!, 4));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out _));
        Assert.Same(r, token);
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
    }

    [Fact]
    public void APackedUseCutShortIsPublishedByTheNextQueueAtTheSameOffset()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { Packed = true });
        var layout = q.Device.Layout;
        var gate = new WriteInterrupter { From = layout.Desc, To = layout.Desc + 8 * 16 };
        var dev = Device(q, gate);
        var a = q.AddOk([8], [8]);
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var ca));
        gate.Armed = true;
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(ca!, 8));
        Assert.False(dev.IsBroken, dev.ErrorDetail);
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.Equal([new UsedElement(ca!.Head, 8, 2)], dev.UnpublishedUsed!);
        // The base a back-end would hand out keeps the published used offset: the element goes there after the restart.
        Assert.Equal(0, dev.Position.NextUsed);

        gate.Armed = false;
        var next = Device(q, gate);
        next.Restore(new QueueRestore { Position = dev.Position, Unpublished = dev.UnpublishedUsed });
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var ta, out uint la));
        Assert.Equal((a, 8u), (ta, la));
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.Equal(2, next.Position.NextUsed);
        AssertGoesOn(q, next);
    }

    [Fact]
    public void LaterUsesWaitBehindOneCutShortInOrder()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8);
        var gate = new WriteInterrupter { From = q.Device.Layout.Used, To = q.Device.Layout.AvailEventAddr };
        var dev = Device(q, gate);
        var a = q.AddOk([], [8]);
        var b = q.AddOk([], [8]);
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var ca));
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var cb));
        gate.Armed = true;
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(cb!, 2));
        gate.Armed = false;
        // The translation is back, but the older entry has not been published: the newer one may not overtake it.
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(ca!, 1));
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        var next = Device(q, gate);
        next.Restore(new QueueRestore { Position = dev.Position, Unpublished = dev.UnpublishedUsed });
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t1, out uint l1));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t2, out uint l2));
        Assert.Equal((b, 2u, a, 1u), (t1, l1, t2, l2));
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
    }

    [Fact]
    public void WithAnInflightLogTheChainCutShortStaysInFlightThereAndNothingWaitsInTheQueue()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8);
        var gate = new WriteInterrupter { From = q.Device.Layout.Used, To = q.Device.Layout.AvailEventAddr };
        var log = new RecordingLog();
        var dev = Device(q, gate);
        dev.Restore(new QueueRestore { Position = dev.Position, Log = log });
        q.AddOk([], [8]);
        q.AddOk([], [8]);
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var ca));
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var cb));
        gate.Armed = true;
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(ca!, 8));
        gate.Armed = false;
        // Every later use of this run stays in flight in the log too, or the log and the ring would disagree.
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(cb!, 8));
        Assert.False(dev.IsBroken, dev.ErrorDetail);
        Assert.Null(dev.UnpublishedUsed);
        Assert.Empty(log.Used);
        Assert.Equal([ca!.Head, cb!.Head], log.Popped);
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
    }

    /// <summary>§2.7.10: the empty ring's avail_event store is cut short; the queue stays whole and writes it at its next pop.</summary>
    [Fact]
    public void AnAvailEventStoreCutShortIsNotTheDriversFaultAndIsWrittenAgain()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { EventIdx = true });
        var at = q.Device.Layout.AvailEventAddr;
        var gate = new WriteInterrupter { From = at, To = at + 2 };
        var dev = Device(q, gate);
        q.AddOk([], [8]);
        q.Driver.KickPrepare();
        Assert.Equal(QueueStatus.Ok, dev.Pop(out var c));
        Assert.Equal(QueueStatus.Ok, dev.AddUsed(c!, 0));
        gate.Armed = true;
        Assert.Equal(QueueStatus.Empty, dev.Pop(out _));
        Assert.True(gate.Interrupted > 0);
        Assert.False(dev.IsBroken, dev.ErrorDetail);
        gate.Armed = false;
        Assert.Equal(QueueStatus.Empty, dev.Pop(out _));
        q.AddOk([], [8]);
        Assert.True(q.Driver.KickPrepare(), "avail_event was not written once the store could go through");
    }

    private sealed class RecordingLog : IInflightLog
    {
        public List<ushort> Popped { get; } = [];
        public List<ushort> Used { get; } = [];
        void IInflightLog.Popped(ushort head) => Popped.Add(head);
        public void Using(ushort head) { }
        void IInflightLog.Used(ushort head, ushort usedIdx) => Used.Add(head);
    }
}
