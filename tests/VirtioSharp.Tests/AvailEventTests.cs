using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// EVENT_IDX on split rings (virtio 1.2 §2.7.10): a device that only pops until empty, never calling
/// Disable/EnableNotifications, must still be notified of every later buffer.
/// </summary>
public class AvailEventTests
{
    [Theory]
    [InlineData(DmaMode.Direct)]
    [InlineData(DmaMode.IommuStrict)]
    [InlineData(DmaMode.Bounce)]
    public void PoppingUntilEmptyPublishesAvailEvent(DmaMode mode)
    {
        using var rig = DmaRig.Create(mode);
        using var q = new QueuePair(rig, 8, new QueueOptions { EventIdx = true });
        for (int round = 0; round < 40; round++)   // many laps of the 8-entry ring
        {
            int n = 1 + round % 3;
            for (int i = 0; i < n; i++) q.AddOk([], [8]);
            Assert.True(q.Driver.KickPrepare(), $"round {round}: the driver was not asked to notify for new buffers");
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
                Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
            }
            Assert.Equal(QueueStatus.Empty, q.Device.Pop(out _));
            while (q.Driver.GetUsed(out _, out _) == QueueStatus.Ok) { }
        }
    }

    [Fact]
    public void BufferAddedBeforeTheRearmIsPoppedNotLost()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { EventIdx = true });
        q.AddOk([], [8]);
        q.Driver.KickPrepare();
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out _));
        // A second buffer added without a kick: the device's next pop re-reads avail idx and finds it.
        q.AddOk([], [8]);
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out _));
        Assert.Equal(QueueStatus.Empty, q.Device.Pop(out _));
        q.AddOk([], [8]);
        Assert.True(q.Driver.KickPrepare(), "avail_event was published at the device's stopping point");
    }
}
