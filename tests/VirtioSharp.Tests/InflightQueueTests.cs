using System.Runtime.InteropServices;
using VirtioSharp.Testing;
using VirtioSharp.VhostUser.Backend;

namespace VirtioSharp.Tests;

/// <summary>The shared inflight region as a restarted back-end reads it (vhost-user.rst "Inflight I/O tracking").</summary>
public unsafe class InflightQueueTests
{
    private static (InflightQueue Q, nint Mem) Make(ushort size)
    {
        nint mem = (nint)NativeMemory.AllocZeroed((nuint)InflightQueue.QueueBytes(size));
        return (new InflightQueue((byte*)mem, size), mem);
    }

    [Fact]
    public void CrashBetweenUsedRingAndClearSettlesTheLastBatchAndResubmitsTheRestInPopOrder()
    {
        var (q, mem) = Make(8);
        try
        {
            q.Initialize(0);
            q.Popped(6);
            q.Popped(2);
            q.Popped(4);
            q.Using(2);
            q.Used(2, 1);          // fully completed
            q.Using(6);            // used ring written (used idx now 2) but the back-end died before Used()
            var restarted = new InflightQueue((byte*)mem, 8);
            Assert.True(restarted.IsInitialized);
            Assert.Equal(new ushort[] { 4 }, restarted.Recover(ringUsedIdx: 2));
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    [Fact]
    public void WithoutAHalfDoneBatchEveryUnusedHeadComesBackOldestFirst()
    {
        var (q, mem) = Make(4);
        try
        {
            q.Initialize(7);
            q.Popped(3);
            q.Popped(0);
            q.Popped(1);
            q.Using(0);
            q.Used(0, 8);
            Assert.Equal(new ushort[] { 3, 1 }, new InflightQueue((byte*)mem, 4).Recover(ringUsedIdx: 8));
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    // A fresh log on the pair's device queue, n chains added by the driver and popped by the device.
    private static List<VirtioSharp.Queues.DescriptorChain> LogAndPop(QueuePair pair, InflightQueue log, int n)
    {
        log.Initialize(0);
        pair.Device.Inflight = log;
        for (int i = 0; i < n; i++) pair.AddOk([], [16]);
        var chains = new List<VirtioSharp.Queues.DescriptorChain>();
        while (pair.Device.Pop(out var c) == VirtioSharp.Queues.QueueStatus.Ok) chains.Add(c!);
        return chains;
    }

    [Fact]
    public void InOrderBatchUseClearsEveryHeadOfTheBatch()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var pair = new QueuePair(rig, 8, new VirtioSharp.Queues.QueueOptions { InOrder = true });
        var (log, mem) = Make(8);
        try
        {
            var chains = LogAndPop(pair, log, 3);
            Assert.Equal(3, chains.Count);
            Assert.Equal(VirtioSharp.Queues.QueueStatus.Ok, pair.Device.AddUsedBatch(chains.ToArray(), 16));
            // A restart now must find nothing to resubmit: all three were used.
            Assert.Empty(new InflightQueue((byte*)mem, 8).Recover(pair.Device.NextUsed));
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(VirtioSharp.Queues.QueueStatus.Ok, pair.Driver.GetUsed(out _, out uint len));
                Assert.Equal(16u, len);
            }
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    [Fact]
    public void InOrderBatchOnABrokenQueueStillReleasesEveryChain()
    {
        // Found by the inflight fuzz target (fuzz/regressions/inflight): the logged batch stopped at the first
        // failure and left the rest of the batch in flight on the queue, though the device had handed them back.
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var pair = new QueuePair(rig, 8, new VirtioSharp.Queues.QueueOptions { InOrder = true });
        var (log, mem) = Make(8);
        try
        {
            var chains = LogAndPop(pair, log, 3);
            // The driver breaks the ring: avail idx far ahead (direct DMA: bus address = GPA).
            Assert.True(rig.Platform.Ram.Write(pair.Device.Layout.AvailIdxAddr, BitConverter.GetBytes((ushort)100)) == VirtioSharp.Memory.MemStatus.Ok);
            Assert.Equal(VirtioSharp.Queues.QueueStatus.Broken, pair.Device.Pop(out _));
            Assert.Equal(VirtioSharp.Queues.QueueStatus.Broken, pair.Device.AddUsedBatch(chains.ToArray(), 16));
            Assert.Equal(0, pair.Device.InFlight);
            // Nothing was published, so a restarted back-end resubmits all three, oldest first.
            Assert.Equal(chains.Select(c => c.Head), new InflightQueue((byte*)mem, 8).Recover(pair.Device.NextUsed));
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    [Fact]
    public void GarbageInTheRegionNeverYieldsAHeadOutOfRange()
    {
        var (q, mem) = Make(4);
        try
        {
            q.Initialize(0);
            new Span<byte>((void*)mem, (int)InflightQueue.QueueBytes(4)).Fill(0xFF);
            // Not initialised any more (version/size garbage): the back-end starts afresh instead of trusting it.
            Assert.False(new InflightQueue((byte*)mem, 4).IsInitialized);
            // Even if asked, heads come only from the queue's own range.
            Assert.All(new InflightQueue((byte*)mem, 4).Recover(0), h => Assert.True(h < 4));
        }
        finally { NativeMemory.Free((void*)mem); }
    }
}
