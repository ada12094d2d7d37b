using VirtioSharp.Queues;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// The device counts the used-buffer interrupts a driver's suppression state avoided (virtio 1.2 §2.7.7 split with and
/// without EVENT_IDX, §2.8.10 packed), the figure the vhost_user.interrupts.suppressed meter reports: an interrupt
/// that is sent is not counted, a call with nothing used is not counted, one the driver suppressed is.
/// </summary>
public class SuppressedInterruptTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void OnlyInterruptsTheDriverSuppressedAreCounted(bool eventIdx, bool packed)
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { EventIdx = eventIdx, Packed = packed });
        void UseOne()
        {
            q.AddOk([], [8]);
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
        }

        UseOne();
        Assert.True(q.Device.NeedsInterrupt(), "callbacks enabled: the first used buffer interrupts");
        Assert.False(q.Device.NeedsInterrupt(), "nothing new was used");
        Assert.Equal(0, q.Device.SuppressedInterrupts);

        // Disabled before the driver consumes the entry: with EVENT_IDX, consuming with callbacks on re-arms used_event.
        q.Driver.DisableCallbacks();
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
        for (int i = 1; i <= 3; i++)
        {
            UseOne();
            Assert.False(q.Device.NeedsInterrupt(), $"used buffer {i} interrupted a driver that disabled callbacks");
            Assert.Equal(i, q.Device.SuppressedInterrupts);
        }
        while (q.Driver.GetUsed(out _, out _) == QueueStatus.Ok) { }

        Assert.True(q.Driver.EnableCallbacks());
        UseOne();
        Assert.True(q.Device.NeedsInterrupt(), "callbacks re-enabled: the next used buffer interrupts");
        Assert.Equal(3, q.Device.SuppressedInterrupts);
    }
}
