using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using VirtioSharp.Devices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;
using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// The device seam's contract, checked on both hosts: device-initiated work (wake, post, timer, fd source) runs on
/// the queue's owner thread; a reset context does nothing; the device's own feature check and config change reach
/// the driver through each transport; protocol features follow what the device can do.
/// </summary>
public class DeviceSeamTests
{
    private static void WaitFor(Func<bool> cond, string what, int ms = 5000)
    {
        var sw = Stopwatch.StartNew();
        while (!cond())
        {
            if (sw.ElapsedMilliseconds > ms) Assert.Fail($"timed out waiting for {what}");
            Thread.Sleep(2);
        }
    }

    [Fact]
    public void OverVhostUserDeviceInitiatedWorkRunsOnTheRingsOwnerThread()
    {
        var inner = new EntropyDevice<RMem>();
        var dev = new DelegatingDevice<RMem>(inner);
        var threads = new ConcurrentQueue<string?>();
        int notifies = 0;
        dev.OnNotify = (_, q) => { threads.Enqueue(Thread.CurrentThread.Name); Interlocked.Increment(ref notifies); inner.QueueNotify(q); };
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = EntropyDriver.Probe(fe, fe.Environment());
        var ctx = dev.Context!;
        Assert.True(ctx.IsActive);

        int before = Volatile.Read(ref notifies);
        ctx.Wake(0);
        WaitFor(() => Volatile.Read(ref notifies) > before, "the wake to run the device");

        string? posted = null;
        ctx.Post(0, () => Volatile.Write(ref posted, Thread.CurrentThread.Name ?? "?"));
        WaitFor(() => Volatile.Read(ref posted) is not null, "posted work to run");
        Assert.Equal("vring0", posted);

        before = Volatile.Read(ref notifies);
        var sw = Stopwatch.StartNew();
        ctx.WakeAfter(0, TimeSpan.FromMilliseconds(300));
        WaitFor(() => Volatile.Read(ref notifies) > before, "the timed wake");
        Assert.True(sw.ElapsedMilliseconds >= 250, $"a 300 ms timer fired after {sw.ElapsedMilliseconds} ms");

        using var ev = EventFd.Create(nonBlocking: true);
        string? fired = null;
        using (ctx.AddEventSource(0, ev.Handle, () => { ev.Drain(); Volatile.Write(ref fired, Thread.CurrentThread.Name ?? "?"); }))
        {
            ev.Signal();
            WaitFor(() => Volatile.Read(ref fired) is not null, "the event source to be polled");
            Assert.Equal("vring0", fired);
        }
        Assert.All(threads, n => Assert.Equal("vring0", n));
        var buf = new byte[64];
        Assert.Equal(64, drv.Read(buf));
        Assert.Empty(rig.ResetLines);
    }

    [Fact]
    public void TheSimulatedMachineRunsDeviceWorkWhenPolledNeverOnTheWakingThread()
    {
        using var rig = new SimRig(DmaMode.Direct);
        var inner = new EntropyDevice<Mem>();
        var dev = new DelegatingDevice<Mem>(inner);
        string? ranOn = null;
        dev.OnNotify = (_, q) => { ranOn = Thread.CurrentThread.Name ?? $"#{Environment.CurrentManagedThreadId}"; inner.QueueNotify(q); };
        rig.Add(dev, SimTransport.Pci);
        var drv = EntropyDriver.Probe(rig.DriverTransport(), rig.Environment());
        var ctx = dev.Context!;
        int before = dev.Notifies;
        var t = new Thread(() => ctx.Wake(0)) { Name = "host-thread" };
        t.Start();
        t.Join();
        Assert.Equal(before, dev.Notifies);   // nothing ran on the waking thread
        rig.Machine.Poll();
        Assert.Equal(before + 1, dev.Notifies);
        Assert.NotEqual("host-thread", ranOn);
        int postedOn = 0;
        ctx.Post(0, () => postedOn = Environment.CurrentManagedThreadId);
        rig.Machine.Poll();
        Assert.Equal(Environment.CurrentManagedThreadId, postedOn);
        var e = Assert.Throws<NotSupportedException>(() => ctx.AddEventSource(0, new SafeFileHandle(0, false), () => { }));
        Assert.Contains("Wake, Post or WakeAfter", e.Message);

        drv.Dispose();   // status 0: the device is reset
        Assert.False(ctx.IsActive);
        ctx.Wake(0);
        ctx.Post(0, () => Assert.Fail("work posted to a reset device ran"));
        rig.Machine.Poll();
        Assert.Equal(before + 1, dev.Notifies);
        rig.AssertNoLeaks();
    }

    [Fact]
    public void ConfigChangeRaisesTheConfigInterruptAndGenerationInTheSimulation()
    {
        using var rig = new SimRig(DmaMode.Direct);
        var dev = new DelegatingDevice<Mem>(new ConsoleDevice<Mem>());
        var slot = rig.Add(dev, SimTransport.Mmio);
        using var drv = ConsoleDriver.Probe(rig.DriverTransport(), rig.Environment());
        byte gen = slot.Core.ConfigGeneration;
        slot.Core.ReadAndClearInterrupt();
        dev.Context!.ConfigChanged();
        Assert.Equal(2u, slot.Core.InterruptStatus & 2);
        Assert.NotEqual(gen, slot.Core.ConfigGeneration);
    }

    [Fact]
    public void ConfigChangeIsSentAsBackendConfigChangeMsgOverVhostUser()
    {
        var dev = new DelegatingDevice<RMem>(new ConsoleDevice<RMem>());
        using var rig = new VhostDeviceRig(dev);
        using var raw = new RawClient(rig.SocketPath);
        var (mine, theirs) = SafeFd.SocketPair();
        using var channel = new FdSocket(mine);
        ulong features = raw.AskU64(VhostRequest.GetFeatures);
        raw.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.BackendReq | 1UL << VhostProtocolFeature.Config | 1UL << VhostProtocolFeature.Status);
        raw.Send(VhostRequest.SetBackendReqFd, [], [theirs]);
        theirs.Dispose();
        raw.Send(VhostRequest.SetFeatures, features & (VirtioFeature.Bit(VirtioFeature.Version1) | 1UL << VhostHeader.ProtocolFeaturesBit));
        raw.Send(VhostRequest.SetStatus, (ulong)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk));
        Assert.Equal((ulong)(DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk), raw.AskU64(VhostRequest.GetStatus));
        WaitFor(() => dev.Context is not null, "activation by SET_STATUS");
        dev.Context!.ConfigChanged();
        var hb = new byte[VhostHeader.Length];
        bool got = false;
        var reader = new Thread(() => got = channel.ReceiveExact(hb, null)) { IsBackground = true };
        reader.Start();
        Assert.True(reader.Join(5000) && got, "no message on the back-end channel");
        Assert.Equal((uint)VhostBackendRequest.ConfigChangeMsg, VhostHeader.Parse(hb).Request);
    }

    [Fact]
    public void TheDeviceCanRefuseFeaturesOverVhostUser()
    {
        var dev = new DelegatingDevice<RMem>(new EntropyDevice<RMem>()) { RejectFeatures = f => VirtioFeature.Has(f, VirtioFeature.EventIdx) ? "EVENT_IDX is not for this test" : null };
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        Assert.ThrowsAny<Exception>(() => EntropyDriver.Probe(fe, fe.Environment()));
        WaitFor(() => rig.Log.Lines.Any(l => l.Contains("EVENT_IDX is not for this test")), "the refusal in the log");
        Assert.Contains(rig.Log.Lines, l => l.Contains("closing the connection") && l.Contains("the device refused"));
        Assert.Null(dev.Context);
    }

    [Fact]
    public void ProtocolFeaturesFollowWhatTheDeviceCanDo()
    {
        const int inflight = VhostProtocolFeature.InflightShmfd, config = VhostProtocolFeature.Config;
        ulong rng = VhostUserBackend.ProtocolFeaturesFor(new EntropyDevice<RMem>());
        ulong console = VhostUserBackend.ProtocolFeaturesFor(new ConsoleDevice<RMem>());
        ulong blk = VhostUserBackend.ProtocolFeaturesFor(new BlockDevice<RMem>(new MemoryBackend(1 << 20, false)));
        Assert.Equal(0UL, rng & (1UL << config));        // no config space
        Assert.NotEqual(0UL, rng & (1UL << inflight));   // refilling a buffer after a restart is harmless
        Assert.NotEqual(0UL, console & (1UL << config));
        Assert.Equal(0UL, console & (1UL << inflight));  // replaying output would print it twice
        Assert.NotEqual(0UL, blk & (1UL << config));
        Assert.NotEqual(0UL, blk & (1UL << inflight));
        using var rig = new VhostDeviceRig(new ConsoleDevice<RMem>());
        using var c = new RawClient(rig.SocketPath);
        Assert.Equal(console, c.AskU64(VhostRequest.GetProtocolFeatures));
    }

    [Fact]
    public void RngOverVhostUserServesDistinctEntropyAndCountsEveryByte()
    {
        var dev = new EntropyDevice<RMem>(offerAccessPlatform: true);
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = EntropyDriver.Probe(fe, fe.Environment());
        var all = new byte[1 << 20];
        int got = 0;
        while (got < all.Length) got += drv.Read(all.AsSpan(got, Math.Min(65536, all.Length - got)));
        Assert.Equal(all.Length, got);
        Assert.Equal(all.Length, dev.BytesServed);
        Assert.Equal(16, dev.Requests);
        // Not constant: every 64 KiB block differs and every byte value occurs.
        var blocks = Enumerable.Range(0, 16).Select(i => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(all.AsSpan(i * 65536, 65536)))).ToHashSet();
        Assert.Equal(16, blocks.Count);
        Assert.Equal(256, all.Distinct().Count());
    }

    [Fact]
    public void RngRateLimitHoldsRequestsUntilTheBucketRefills()
    {
        const long rate = 256 * 1024;
        var dev = new EntropyDevice<RMem>(maxBytesPerSecond: rate);
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = EntropyDriver.Probe(fe, fe.Environment());
        var buf = new byte[16384];
        var sw = Stopwatch.StartNew();
        long got = 0;
        while (got < 2 * rate)
        {
            int n = drv.Read(buf);
            // Never a short buffer: Linux's virtio-rng stalls after one (see EntropyDevice.Fill).
            Assert.Equal(buf.Length, n);
            got += n;
        }
        // 512 KiB at 256 KiB/s with a 25.6 KiB bucket (overdrawn by at most one buffer) takes at least ~1.8 s.
        Assert.True(sw.Elapsed >= TimeSpan.FromSeconds(1.5), $"{got} bytes in {sw.ElapsedMilliseconds} ms exceeds the {rate} B/s limit");
        Assert.True(dev.Throttled > 0);
        Assert.Equal(got, dev.BytesServed);
    }
}
