using System.Diagnostics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;
using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// virtio-blk over asynchronous storage: many requests in flight, completions in any order (IN_ORDER still used in
/// order), zero copy where the address space allows, rings that wait for their I/O before they stop, the direct-I/O
/// fence, write-through when the driver turns the cache off, capacity changes, blk_size alignment.
/// </summary>
public class AsyncBlockTests
{
    private const int Len = 4096;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(10);

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static List<BlkOp> SubmitPages(BlkDriver drv, uint type, ulong area, int n) =>
        Enumerable.Range(0, n).Select(i => drv.Submit(type, (ulong)(i * 8), [new BufferSegment(area + (ulong)(i * Len), Len)])).ToList();

    /// <summary>Drives the driver until every request is done (the simulated queue looks at its storage every millisecond).</summary>
    private static bool Drive(BlkDriver drv)
    {
        var sw = Stopwatch.StartNew();
        while (!drv.WaitAll()) if (sw.Elapsed > Limit) return false;
        return true;
    }

    private static void WaitFor(Func<bool> cond, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!cond()) { Assert.True(sw.Elapsed < Limit, $"timed out waiting for {what}"); Thread.Sleep(1); }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void RequestsCompleteInAnyOrderAndInOrderRingsStillUseThemInOrder(bool packed, bool inOrder)
    {
        const int n = 16;
        using var storage = new ManualStorage(1 << 20);
        var rig = new SimRig(DmaMode.Direct);
        var dev = new BlockDevice<Mem>(storage, new BlockDeviceOptions { OfferPacked = packed, OfferInOrder = inOrder });
        rig.Add(dev, SimTransport.Pci);
        using (var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(packed, drv.Device.Has(VirtioFeature.RingPacked));
            Assert.Equal(inOrder, drv.Device.Has(VirtioFeature.InOrder));
            var p = rig.Platform;
            ulong area = p.Allocator.Allocate(n * Len);
            var data = Random(n * Len, 3);
            p.Cpu.Write(area, data);
            var writes = SubmitPages(drv, BlkRequestType.Out, area, n);
            Assert.False(drv.WaitAll());
            // Every request reached the storage at once: n in flight, none finished.
            Assert.Equal(n, storage.Held);
            Assert.Equal(n, rig.Slot!.Core.Host.DirectIo.InFlight);
            Assert.All(writes, w => Assert.False(w.IsCompleted));
            storage.Release(newestFirst: true);
            Assert.True(Drive(drv));
            Assert.All(writes, w => Assert.Equal(BlkStatus.Ok, w.Status));
            Assert.Equal(data, storage.Disk.AsSpan(0, n * Len).ToArray());
            Assert.Equal(0, rig.Slot.Core.Host.DirectIo.InFlight);
            // IN_ORDER: the last completion (the oldest request) released all of them as one used element.
            Assert.Equal(inOrder ? 1 : n, dev.Stats.UsedElements);

            p.Cpu.Write(area, new byte[n * Len]);
            var reads = SubmitPages(drv, BlkRequestType.In, area, n);
            Assert.False(drv.WaitAll());
            // Half of them now, newest first: under IN_ORDER none may be used before the oldest is.
            storage.Release(n / 2, newestFirst: true);
            var until = Stopwatch.StartNew();
            while (until.ElapsedMilliseconds < 50) drv.WaitAll();
            if (inOrder) Assert.All(reads, r => Assert.False(r.IsCompleted));
            else Assert.Equal(n / 2, reads.Count(r => r.IsCompleted));
            storage.Release();
            Assert.True(Drive(drv));
            Assert.All(reads, r => Assert.Equal(BlkStatus.Ok, r.Status));
            var back = new byte[n * Len];
            p.Cpu.Read(area, back);
            Assert.Equal(data, back);
            // The simulated bus hands out no host memory: every request went through the device's own buffer.
            Assert.Equal(2 * n, dev.Stats.Copied);
            p.Allocator.Free(area, n * Len);
        }
        Assert.Null(rig.Slot!.Core.NeedsResetReason);
        rig.Dispose();
    }

    [Fact]
    public void OverVhostUserDataMovesStraightBetweenStorageAndGuestMemory()
    {
        const int n = 8;
        var backend = new MemoryBackend(1 << 20);
        var dev = new BlockDevice<RMem>(backend, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
        using (var drv = BlkDriver.Probe(fe, fe.Environment()))
        {
            var p = fe.Platform;
            ulong area = p.Allocator.Allocate(n * Len);
            var data = Random(n * Len, 4);
            p.Cpu.Write(area, data);
            Assert.True(drv.WaitAll());
            var writes = SubmitPages(drv, BlkRequestType.Out, area, n);
            Assert.True(drv.WaitAll());
            Assert.All(writes, w => Assert.Equal(BlkStatus.Ok, w.Status));
            Assert.Equal(data, backend.Data[..(n * Len)].ToArray());
            p.Cpu.Write(area, new byte[n * Len]);
            var reads = SubmitPages(drv, BlkRequestType.In, area, n);
            Assert.True(drv.WaitAll());
            var back = new byte[n * Len];
            p.Cpu.Read(area, back);
            Assert.Equal(data, back);
        }
        var s = dev.Stats;
        Assert.Equal(n, s.Writes);
        Assert.Equal(n, s.Reads);
        Assert.Equal(0, s.Copied);
        Assert.Empty(rig.ResetLines);
    }

    [Fact]
    public void ARingThatStopsWaitsForItsStorageRequestsAndUsesThem()
    {
        const int n = 4;
        using var storage = new ManualStorage(1 << 20);
        storage.Disk.AsSpan(0, n * Len).Fill(0x5A);
        var dev = new BlockDevice<RMem>(storage, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        var p = fe.Platform;
        ulong area = p.Allocator.Allocate(n * Len);
        var reads = SubmitPages(drv, BlkRequestType.In, area, n);
        WaitFor(() => storage.Held == n, "the reads to reach the storage");
        // GET_VRING_BASE stops the ring: it must not answer while the storage may still write into guest memory.
        var stop = new Thread(() => fe.DeleteQueue(0));
        stop.Start();
        bool early;
        try { early = stop.Join(300); }
        finally { storage.Release(); }   // whatever happened, the reads may not outlive the memory
        Assert.False(early, "the ring stopped with storage requests in flight");
        Assert.True(stop.Join(Limit));
        // They were used before the ring stopped: the driver sees them complete, data in place.
        WaitFor(() => { drv.Device.PollOnce(); return reads.All(r => r.IsCompleted); }, "the reads to be used");
        Assert.All(reads, r => Assert.Equal(BlkStatus.Ok, r.Status));
        var back = new byte[n * Len];
        p.Cpu.Read(area, back);
        Assert.All(back, b => Assert.Equal(0x5A, b));
        Assert.Empty(rig.ResetLines);
    }

    [Fact]
    public void AStorageThatNeverCompletesEndsTheStopWithNeedsReset()
    {
        using var storage = new ManualStorage(1 << 20);
        var dev = new BlockDevice<RMem>(storage, new BlockDeviceOptions { DrainTimeout = TimeSpan.FromMilliseconds(300) });
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        ulong area = fe.Platform.Allocator.Allocate(Len);
        drv.Submit(BlkRequestType.In, 0, [new BufferSegment(area, Len)]);
        WaitFor(() => storage.Held == 1, "the read to reach the storage");
        var sw = Stopwatch.StartNew();
        fe.DeleteQueue(0);
        Assert.InRange(sw.Elapsed, TimeSpan.FromMilliseconds(250), Limit);
        WaitFor(() => rig.ResetLines.Any(l => l.Contains("storage requests still in flight")), "DEVICE_NEEDS_RESET");
    }

    [Fact]
    public void AFullStorageLeavesRequestsOnTheRingUntilCompletionsMakeRoom()
    {
        const int n = 8;
        // Depth 16 with up to 16 discard segments per request: the device keeps room for a whole one, so one at a time.
        using var storage = new ManualStorage(1 << 20, depth: 16);
        var dev = new BlockDevice<RMem>(storage, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        var p = fe.Platform;
        ulong area = p.Allocator.Allocate(n * Len);
        var data = Random(n * Len, 6);
        p.Cpu.Write(area, data);
        var writes = SubmitPages(drv, BlkRequestType.Out, area, n);
        for (int done = 0; done < n; done++)
        {
            WaitFor(() => storage.Held == 1, $"request {done} to reach the storage");
            Thread.Sleep(5);
            Assert.Equal(1, storage.Held);
            storage.Release();
        }
        Assert.True(drv.WaitAll());
        Assert.All(writes, w => Assert.Equal(BlkStatus.Ok, w.Status));
        Assert.Equal(data, storage.Disk.AsSpan(0, n * Len).ToArray());
    }

    [Fact]
    public void WritesAreDurableWhenTheDriverTurnsTheWriteCacheOff()
    {
        using var storage = new ManualStorage(1 << 20) { AutoRelease = true };
        var dev = new BlockDevice<RMem>(storage, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        ulong area = fe.Platform.Allocator.Allocate(Len);
        Assert.Equal(1, drv.Writeback);
        Assert.Equal(BlkStatus.Ok, drv.Write(0, new byte[Len]));
        Assert.True(drv.SetWriteback(false));
        Assert.Equal(0, drv.Writeback);
        Assert.True(dev.WriteThrough);
        Assert.Equal(BlkStatus.Ok, drv.Write(8, new byte[Len]));
        var writes = storage.Submitted.Where(s => s.Op == BlockOp.Write).ToList();
        Assert.Equal(2, writes.Count);
        Assert.Equal(BlockRequestFlags.None, writes[0].Flags);
        Assert.Equal(BlockRequestFlags.Fua, writes[1].Flags);
        Assert.True(drv.SetWriteback(true));
        Assert.False(dev.WriteThrough);
    }

    [Fact]
    public void ADriverThatCannotFlushGetsWriteThrough()
    {
        using var storage = new ManualStorage(1 << 20) { AutoRelease = true };
        var dev = new BlockDevice<Mem>(storage, new BlockDeviceOptions());
        var rig = new SimRig(DmaMode.Direct);
        rig.Add(dev, SimTransport.Pci);
        var t = rig.DriverTransport();
        using (var drv = VirtioDriverDevice.Probe(t, rig.Environment(), BlkDriver.DriverFeatures & ~(1UL << BlkFeature.Flush), 1))
        {
            Assert.False(drv.Has(BlkFeature.Flush));
            Assert.True(dev.WriteThrough);
            Span<byte> wb = stackalloc byte[1];
            drv.ReadConfig(BlkSpec.Writeback, wb);
            Assert.Equal(0, wb[0]);
        }
        rig.Dispose();
    }

    [Fact]
    public void ACapacityChangeReachesTheDriverWithAConfigInterrupt()
    {
        using var storage = new ManualStorage(4 << 20, new BlockStorageInfo { Size = 1 << 20 }) { AutoRelease = true };
        var dev = new BlockDevice<Mem>(storage, new BlockDeviceOptions());
        var rig = new SimRig(DmaMode.Direct);
        rig.Add(dev, SimTransport.Pci);
        using (var drv = BlkDriver.Probe(rig.DriverTransport(), rig.Environment()))
        {
            Assert.Equal(2048UL, drv.CapacitySectors);
            Assert.False(dev.RefreshCapacity());
            byte gen = rig.Slot!.Core.ConfigGeneration;
            storage.SetSize(3 << 20);
            Assert.True(dev.RefreshCapacity());
            Assert.NotEqual(gen, rig.Slot.Core.ConfigGeneration);
            drv.Device.HandleInterrupt();
            Assert.True(drv.Device.ConfigChanged);
            Assert.Equal(6144UL, drv.RefreshCapacity());
            // The new end is usable; past it is not.
            Assert.Equal(BlkStatus.Ok, drv.Write(6144 - 8, new byte[Len]));
            storage.SetSize(1 << 20);
            Assert.True(dev.RefreshCapacity());
            Assert.Equal(2048UL, drv.RefreshCapacity());
            Assert.Equal(BlkStatus.IoErr, drv.Write(2048, new byte[Len]));
        }
        rig.Dispose();
    }

    [Fact]
    public void StorageWith4KBlocksRefusesRequestsNotAlignedToThem()
    {
        using var storage = new ManualStorage(1 << 20, new BlockStorageInfo { Size = 1 << 20, LogicalBlockSize = 4096, PhysicalBlockSize = 4096 }) { AutoRelease = true };
        var dev = new BlockDevice<RMem>(storage, new BlockDeviceOptions());
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        Assert.Equal(4096u, drv.BlockSize);
        Assert.Equal(BlkStatus.Ok, drv.Write(8, new byte[Len]));
        ulong area = fe.Platform.Allocator.Allocate(Len);
        var odd = drv.Submit(BlkRequestType.Out, 1, [new BufferSegment(area, Len)]);
        var shortOne = drv.Submit(BlkRequestType.Out, 8, [new BufferSegment(area, 512)]);
        Assert.True(drv.WaitAll());
        Assert.Equal(BlkStatus.IoErr, odd.Status);
        Assert.Equal(BlkStatus.IoErr, shortOne.Status);
        Assert.Equal(2, dev.Stats.Misaligned);
        Assert.Equal(1, storage.Submitted.Count(s => s.Op == BlockOp.Write));
    }

    [Fact]
    public void TheDirectIoFenceWaitsOnlyForIoBegunBeforeIt()
    {
        var fence = new DirectIoFence(2);
        int a = fence.Enter(1);
        bool result = false;
        var waiting = new Thread(() => result = fence.Wait(Limit));
        waiting.Start();
        Thread.Sleep(50);
        // I/O that begins while the wait runs does not hold it up.
        int late = fence.Enter(0);
        Assert.False(waiting.Join(100));
        fence.Exit(1, a);
        Assert.True(waiting.Join(Limit));
        Assert.True(result);
        Assert.Equal(1, fence.InFlight);
        fence.Exit(0, late);
        Assert.True(fence.Wait(TimeSpan.FromMilliseconds(50)));
        Assert.Equal(0, fence.InFlight);
    }

    [Fact]
    public void AFenceThatTimedOutStillWaitsForItsStragglersNextTime()
    {
        var fence = new DirectIoFence(1);
        int old = fence.Enter(0);
        Assert.False(fence.Wait(TimeSpan.FromMilliseconds(50)));
        int newer = fence.Enter(0);
        bool result = false;
        var waiting = new Thread(() => result = fence.Wait(Limit));
        waiting.Start();
        fence.Exit(0, newer);
        // The straggler from before the first wait is older than this one too.
        Assert.False(waiting.Join(150));
        fence.Exit(0, old);
        Assert.True(waiting.Join(Limit));
        Assert.True(result);
    }

    [Fact]
    public void TheFenceStopsWaitingAsSoonAsItsIoCannotFinish()
    {
        var fence = new DirectIoFence(1);
        int token = fence.Enter(0);
        bool stalled = false;
        var sw = Stopwatch.StartNew();
        bool result = true;
        var waiting = new Thread(() => result = fence.Wait(Limit, () => Volatile.Read(ref stalled)));
        waiting.Start();
        Assert.False(waiting.Join(100));
        // The I/O's owner thread now waits for the waiter (an IOTLB miss the front-end answers after the ack).
        Volatile.Write(ref stalled, true);
        Assert.True(waiting.Join(Limit));
        Assert.False(result);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5));
        fence.Exit(0, token);
    }
}
