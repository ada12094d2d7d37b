using System.Buffers.Binary;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// Every fd the back-end receives is owned or closed on every path: after thousands of refused messages of every kind
/// that carries fds, none of the objects sent is still open in this process (front-end and back-end share it, so any
/// descriptor still naming one of them is the back-end's leak), without waiting for a garbage collection.
/// </summary>
public class VhostFdLeakTests
{
    private const string Probe = "leakprobe";
    private const ulong EventfdMark = 0x7E57_1EAC;

    private delegate void Refused(RawClient c, Func<SafeFd> memfd, Func<SafeFd> eventfd);

    private static readonly (string Name, bool ClosesConnection, Refused Send)[] Cases =
    [
        ("SET_MEM_TABLE with overlapping regions", true, (c, m, e) =>
        {
            using SafeFd a = m(), b = m();
            c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 4096, UserAddr, 0), new VhostMemoryRegion(0, 4096, UserAddr + 0x10000, 0)), [a, b]);
        }),
        ("SET_MEM_TABLE with an unsealed memfd", true, (c, m, e) =>
        {
            using var a = MemFd.Create(Probe, 4096, seals: 0);
            c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 4096, UserAddr, 0)), [a]);
        }),
        ("SET_MEM_TABLE with more fds than regions", true, (c, m, e) =>
        {
            using SafeFd a = m(), b = m(), x = e();
            c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 4096, UserAddr, 0)), [a, b, x]);
        }),
        ("ADD_MEM_REG of size 0", true, (c, m, e) =>
        {
            using var a = m();
            c.Send(VhostRequest.AddMemReg, OneRegion(new VhostMemoryRegion(0, 0, UserAddr, 0)), [a]);
        }),
        ("SET_VRING_KICK with a memfd", true, (c, m, e) =>
        {
            using var a = m();
            c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [a]);
        }),
        ("SET_VRING_CALL with two eventfds", true, (c, m, e) =>
        {
            using SafeFd a = e(), b = e();
            c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [a, b]);
        }),
        ("SET_VRING_ERR for a ring that does not exist", true, (c, m, e) =>
        {
            using var a = e();
            c.Send(VhostRequest.SetVringErr, RawClient.U64(9), [a]);
        }),
        ("SET_INFLIGHT_FD with an inconsistent size", true, (c, m, e) =>
        {
            using var a = m();
            c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.InflightShmfd);
            var p = new byte[InflightDescription.WireSize];
            new InflightDescription(4096, 0, 1, 1024).Write(p);
            c.Send(VhostRequest.SetInflightFd, p, [a]);
        }),
        ("SET_INFLIGHT_FD before INFLIGHT_SHMFD was negotiated", true, (c, m, e) =>
        {
            using var a = m();
            var p = new byte[InflightDescription.WireSize];
            new InflightDescription(InflightQueue.QueueBytes(16), 0, 1, 16).Write(p);
            c.Send(VhostRequest.SetInflightFd, p, [a]);
        }),
        ("SET_BACKEND_REQ_FD with an eventfd", true, (c, m, e) =>
        {
            using var a = e();
            c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [a]);
        }),
        ("a payload cut short after its fds", true, (c, m, e) =>
        {
            using var a = m();
            var msg = new byte[VhostHeader.Length + 4];
            new VhostHeader((uint)VhostRequest.SetVringKick, VhostHeader.Version, 8).Write(msg);
            c.SendRaw(msg, [a]);
            c.ShutdownWrite();
        }),
        ("more fds than any message carries", true, (c, m, e) =>
        {
            var many = Enumerable.Range(0, FdSocket.MaxFds).Select(_ => m()).Append(e()).ToArray();
            var msg = new byte[VhostHeader.Length];
            new VhostHeader((uint)VhostRequest.GetFeatures, VhostHeader.Version, 0).Write(msg);
            c.SendWithAnyFds(msg, many);   // the back-end's receive truncates the control data
            foreach (var fd in many) fd.Dispose();
        }),
        ("GET_FEATURES carrying fds it does not take", false, (c, m, e) =>
        {
            using SafeFd a = m(), b = e();
            c.Send(VhostRequest.GetFeatures, ReadOnlySpan<byte>.Empty, [a, b]);
            c.Receive();
        }),
    ];

    public static TheoryData<int> CaseIndexes() => [.. Enumerable.Range(0, Cases.Length)];

    [Theory]
    [MemberData(nameof(CaseIndexes))]
    public unsafe void RefusedMessagesLeaveNoDescriptorOpen(int index)
    {
        var (name, closes, send) = Cases[index];
        using var rig = new VhostRig();
        SafeFd Memfd() => MemFd.Create(Probe, 4096);
        SafeFd Eventfd()
        {
            var ev = EventFd.Create();
            ulong mark = EventfdMark;
            LibC.Write(ev.Handle.Fd, &mark, 8);
            return ev.Handle;
        }
        const int rounds = 300;
        for (int i = 0; i < rounds; i++)
        {
            using var c = rig.Connect();
            send(c, Memfd, Eventfd);
            if (closes) Assert.True(c.IsClosedByPeer(), $"{name}: the back-end should refuse and close");
        }
        Assert.True(rig.WaitClosed(rounds, 20_000), $"{name}: connections did not all end");
        var open = OpenProbes();
        Assert.True(open.Count == 0, $"{name}: {open.Count} descriptors still open after {rounds} refusals, e.g. {string.Join(", ", open.Take(3))}");
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
    }

    /// <summary>This process's fds that name an object the test sent: a probe memfd or an eventfd carrying the mark.</summary>
    private static List<string> OpenProbes()
    {
        var found = new List<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try { target = new FileInfo(entry).LinkTarget; }
            catch (IOException) { continue; }
            if (target is null) continue;
            if (target.StartsWith($"/memfd:{Probe}")) found.Add($"{entry} -> {target}");
            else if (target == "anon_inode:[eventfd]" && HasMark(Path.GetFileName(entry))) found.Add($"{entry} -> eventfd");
        }
        return found;
    }

    private static bool HasMark(string fd)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/self/fdinfo/{fd}"))
                if (line.StartsWith("eventfd-count:") && Convert.ToUInt64(line["eventfd-count:".Length..].Trim(), 16) == EventfdMark) return true;
        }
        catch (IOException) { }
        return false;
    }
}
