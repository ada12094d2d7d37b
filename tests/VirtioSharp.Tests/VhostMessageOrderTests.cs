using System.Buffers.Binary;
using CsCheck;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// Every message is valid in every state or refused in it with a reason: the peer chooses the order (features changed
/// after ring setup, every memory region removed, rings kicked before memory), and no order makes a handler or a
/// ring worker fail with anything but a stated refusal.
/// </summary>
public class VhostMessageOrderTests
{
    private static void AssertNoFaults(VhostRig rig)
    {
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("worker failed") || l.Contains("internal error"));
    }

    /// <summary>
    /// QEMU 7.2 sends ADD_MEM_REG (and REM_MEM_REG) once per vhost device, and a multiqueue virtio-net has one per queue
    /// pair on the same connection: a region added again with the same addresses changes nothing (its fd is closed, the
    /// rings keep running), and removing it twice is no error.
    /// </summary>
    /// <summary>MEM_SLOTS negotiated, <paramref name="region"/> added with ADD_MEM_REG, ring 0 started; returns its kick fd.</summary>
    private static EventFd StartRing0OnAddedRegion(VhostRig rig, RawClient c, SafeFd mem, VhostMemoryRegion region)
    {
        c.Send(VhostRequest.SetProtocolFeatures, (1UL << VhostProtocolFeature.Status) | (1UL << VhostProtocolFeature.ConfigureMemSlots));
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1));
        c.Send(VhostRequest.AddMemReg, OneRegion(region), [mem]);
        ConfigureRing0(c);
        var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Assert.True(WaitForLog(rig, "vring 0 started"));
        return kick;
    }

    [Fact]
    public void ARegionAddedTwiceIsMappedOnceAndItsSecondFdClosed()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var region = new VhostMemoryRegion(0, MemBytes, UserAddr, 0);
        using var kick = StartRing0OnAddedRegion(rig, c, mem, region);
        using (var repeat = MemFd.Create("vs-dup-region", MemBytes))
            c.Send(VhostRequest.AddMemReg, OneRegion(region), [repeat]);
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.Single(rig.Log.Lines, l => l.Contains("memory table:"));
        Assert.Single(rig.Log.Lines, l => l.Contains("vring 0 started"));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries("/proc/self/fd"),
            e => { try { return new FileInfo(e).LinkTarget?.StartsWith("/memfd:vs-dup-region") == true; } catch (IOException) { return false; } });
        c.Send(VhostRequest.RemMemReg, OneRegion(region));
        Assert.True(WaitForLog(rig, "memory table: no regions"));
        c.Send(VhostRequest.RemMemReg, OneRegion(region));
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        AssertNoFaults(rig);
    }

    [Fact]
    public void RemovingEveryRegionStopsTheRingsUntilMemoryReturns()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var region = new VhostMemoryRegion(0, MemBytes, UserAddr, 0);
        using var kick = StartRing0OnAddedRegion(rig, c, mem, region);
        c.Send(VhostRequest.RemMemReg, OneRegion(region));
        Assert.True(WaitForLog(rig, "memory table: no regions"));
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.Single(rig.Log.Lines, l => l.Contains("vring 0 started"));
        using var again = MemFd.Create("mem", MemBytes);
        c.Send(VhostRequest.AddMemReg, OneRegion(region), [again]);
        var end = Environment.TickCount64 + 5000;
        while (rig.Log.Lines.Count(l => l.Contains("vring 0 started")) < 2 && Environment.TickCount64 < end) Thread.Sleep(10);
        Assert.Equal(2, rig.Log.Lines.Count(l => l.Contains("vring 0 started")));
        AssertNoFaults(rig);
    }

    /// <summary>A size and base valid for packed rings, then SET_FEATURES without RING_PACKED, then the kick.</summary>
    [Fact]
    public void RingSetUpForOneLayoutThenStartedAsTheOtherIsRefusedWithAReason()
    {
        using var rig = new VhostRig(packed: true);
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.RingPacked));
        c.Send(VhostRequest.SetVringNum, RawClient.State(0, 100));
        c.Send(VhostRequest.SetVringBase, RawClient.State(0, 0x8000_8000));
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1));
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Assert.True(WaitForLog(rig, "do not fit a split ring"));
        Assert.NotEqual(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        AssertNoFaults(rig);
    }

    /// <summary>
    /// Random sequences over every message the back-end handles, with plausible and implausible arguments, in any
    /// order: each connection ends served or refused, never with a handler fault or a failed worker, and the next
    /// connection is served.
    /// </summary>
    [Fact]
    public void AnyOrderOfMessagesIsServedOrRefusedNeverABug()
    {
        using var rig = new VhostRig(2 << 20, queues: 2, packed: true);
        int connections = 0;
        Gen.Int.Sample(seed =>
        {
            var rnd = new Random(seed);
            var fds = new List<SafeFd>();
            try
            {
                using (var c = rig.Connect())
                {
                    connections++;
                    ulong offered = c.AskU64(VhostRequest.GetFeatures), offeredProtocol = c.AskU64(VhostRequest.GetProtocolFeatures);
                    int n = rnd.Next(1, 40);
                    var regions = new HashSet<int>();
                    try
                    {
                        // Half the sessions start the way QEMU does, so the random part finds rings running.
                        if (rnd.Next(2) == 0) foreach (int step in new[] { 1, 0, 2, 5, 6, 9, 8, 11 }) SendOne(c, rnd, fds, offered, offeredProtocol, regions, step, ring: 0);
                        for (int i = 0; i < n; i++) SendOne(c, rnd, fds, offered, offeredProtocol, regions, rnd.Next(0, 26), ring: rnd.Next(25) == 0 ? 2u : (uint)rnd.Next(2));
                        c.ShutdownWrite();
                    }
                    catch (IOException) { }   // refused: the back-end closed the connection before the end
                    while (c.Receive(fds) is not null) { }   // replies, some with fds (GET_INFLIGHT_FD)
                }
                Assert.True(rig.WaitClosed(connections, 10_000), $"seed {seed}: the connection did not end");
                Assert.True(rig.Server.Stats.HandlerFaults == 0, $"seed {seed}: {string.Join(" | ", rig.Log.Lines.Where(l => l.Contains("internal error")))}");
                Assert.False(rig.Log.Lines.Any(l => l.Contains("worker failed")), $"seed {seed}: {string.Join(" | ", rig.Log.Lines.Where(l => l.Contains("worker failed")))}");
            }
            finally { foreach (var fd in fds) fd.Dispose(); }
        }, iter: 150);
        using var next = rig.Connect();
        Assert.True(VirtioFeature.Has(next.AskU64(VhostRequest.GetFeatures), VirtioFeature.Version1));
    }

    /// <summary>A random subset of <paramref name="offered"/>, now and then with a bit never offered.</summary>
    private static ulong Subset(Random rnd, ulong offered, ulong always)
    {
        ulong r = ((ulong)rnd.NextInt64() & offered) | always;
        return rnd.Next(10) == 0 ? r | (1UL << rnd.Next(64)) : r;
    }

    /// <summary>Message <paramref name="kind"/> with mostly plausible arguments; <paramref name="regions"/> tracks which gpa slots hold memory.</summary>
    private static void SendOne(RawClient c, Random rnd, List<SafeFd> fds, ulong offered, ulong offeredProtocol, HashSet<int> regions, int kind, uint ring)
    {
        ulong ua = UserAddr + (ulong)rnd.Next(0, 4) * 0x4000 + (rnd.Next(12) == 0 ? 0xDEAD_0000UL : 0);
        bool odd = rnd.Next(12) == 0;   // now and then an argument no front-end should send
        int Slot(bool present)
        {
            var pick = Enumerable.Range(0, 3).Where(i => regions.Contains(i) == present).ToArray();
            return pick.Length == 0 || odd ? rnd.Next(3) : pick[rnd.Next(pick.Length)];
        }
        VhostMemoryRegion RegionAt(int i) => new((ulong)i * MemBytes, MemBytes, UserAddr + (ulong)i * MemBytes, 0);
        SafeFd Mem(ulong size) { var f = MemFd.Create("mem", size); fds.Add(f); return f; }
        SafeFd Ev() { var e = EventFd.Create(); fds.Add(e.Handle); return e.Handle; }
        void kick() => c.Send(VhostRequest.SetVringKick, RawClient.U64(ring), [Ev()]);
        switch (kind)
        {
            case 0: c.Send(VhostRequest.SetFeatures, Subset(rnd, offered, VirtioFeature.Bit(VirtioFeature.Version1))); break;
            case 1: c.Send(VhostRequest.SetProtocolFeatures, Subset(rnd, offeredProtocol, 1UL << VhostProtocolFeature.ConfigureMemSlots)); break;
            case 2:
                c.Send(VhostRequest.SetMemTable, MemTable(RegionAt(0)), [Mem(MemBytes)]);
                regions.Clear();
                regions.Add(0);
                break;
            case 3:
            {
                int i = Slot(present: false);
                c.Send(VhostRequest.AddMemReg, OneRegion(RegionAt(i)), [Mem(MemBytes)]);
                regions.Add(i);
                break;
            }
            case 4:
            {
                int i = Slot(present: true);
                c.Send(VhostRequest.RemMemReg, OneRegion(RegionAt(i)));
                regions.Remove(i);
                break;
            }
            case 5: c.Send(VhostRequest.SetVringNum, RawClient.State(ring, odd ? (uint)new[] { 100, 0, 32768 }[rnd.Next(3)] : (uint)new[] { 16, 64, 256 }[rnd.Next(3)])); break;
            case 6:
            {
                var a = new byte[40];
                BinaryPrimitives.WriteUInt32LittleEndian(a, ring);
                BinaryPrimitives.WriteUInt64LittleEndian(a.AsSpan(8), ua);
                BinaryPrimitives.WriteUInt64LittleEndian(a.AsSpan(16), ua + 0x2000);
                BinaryPrimitives.WriteUInt64LittleEndian(a.AsSpan(24), ua + 0x1000);
                c.Send(VhostRequest.SetVringAddr, a);
                break;
            }
            case 7: c.Send(VhostRequest.SetVringBase, RawClient.State(ring, odd ? (uint)rnd.Next() : rnd.Next(3) == 0 ? 0x8000_8000u | (uint)rnd.Next(0, 8) : (uint)rnd.Next(0, 20))); break;
            case 8: c.Send(VhostRequest.SetVringKick, RawClient.U64(ring), [Ev()]); break;
            case 9: c.Send(VhostRequest.SetVringCall, RawClient.U64(ring), [Ev()]); break;
            case 10: c.Send(VhostRequest.SetVringErr, RawClient.U64(ring | (odd ? 0x100u : 0)), odd ? [] : [Ev()]); break;
            case 11: c.Send(VhostRequest.SetVringEnable, RawClient.State(ring, (uint)rnd.Next(0, 2))); break;
            case 12: c.Send(VhostRequest.GetVringBase, RawClient.State(ring, 0)); break;
            case 13: c.Send(VhostRequest.SetStatus, (ulong)rnd.Next(0, 256)); break;
            case 14: c.Send(VhostRequest.ResetDevice, ReadOnlySpan<byte>.Empty); break;
            case 15:
            {
                c.Send(VhostRequest.IotlbMsg, new IotlbRequest(ua, (ulong)rnd.Next(1, 0x10000), ua,
                    (byte)(odd ? 0 : rnd.Next(1, 4)), odd ? (byte)rnd.Next(0, 6) : (byte)rnd.Next(2, 4)).ToArray());
                break;
            }
            case 16:
            {
                var p = new byte[12 + 64];
                uint size = (uint)rnd.Next(1, 9);
                BinaryPrimitives.WriteUInt32LittleEndian(p, odd ? (uint)rnd.Next(0, 80) : (uint)rnd.Next(0, 60 - (int)size));
                BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), odd ? (uint)rnd.Next(0, 65) : size);
                c.Send(rnd.Next(2) == 0 ? VhostRequest.GetConfig : VhostRequest.SetConfig, p);
                break;
            }
            case 17:
            {
                var p = new byte[InflightDescription.WireSize];
                new InflightDescription(0, 0, (ushort)(odd ? rnd.Next(0, 4) : rnd.Next(1, 3)), (ushort)(odd ? 100 : new[] { 16, 256 }[rnd.Next(2)])).Write(p);
                c.Send(VhostRequest.GetInflightFd, p);
                break;
            }
            case 18:
            {
                ushort qs = (ushort)new[] { 16, 256 }[rnd.Next(2)];
                bool packed = rnd.Next(2) == 0;
                ulong size = VirtioSharp.VhostUser.Backend.VhostInflightState.QueueBytes(qs, packed) * 2;
                var p = new byte[InflightDescription.WireSize];
                new InflightDescription(size, 0, 2, qs).Write(p);
                c.Send(VhostRequest.SetInflightFd, p, [Mem(size)]);
                break;
            }
            case 19:
            {
                var (a, b) = SafeFd.SocketPair();
                fds.Add(a);
                fds.Add(b);
                c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [b]);
                break;
            }
            case 20: c.Send(VhostRequest.GetFeatures, ReadOnlySpan<byte>.Empty); break;
            case 21: case 22: kick(); break;
            default: c.Send(rnd.Next(2) == 0 ? VhostRequest.GetProtocolFeatures : VhostRequest.GetQueueNum, ReadOnlySpan<byte>.Empty); break;
        }
    }
}
