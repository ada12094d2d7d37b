using System.Runtime.InteropServices;
using VirtioSharp.Interop;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// The front-end's side of the socket: sendmsg with any number of descriptors in one SCM_RIGHTS message (the
/// product's FdSocket refuses more than its cap of 8, and the point is to send more), plus pipe2 for pipe ends.
/// </summary>
internal static unsafe partial class ScmRights
{
    private static int Align(int n) => (n + 7) & ~7;

    /// <summary>Sends all of <paramref name="data"/> (blocking), <paramref name="fds"/> attached to its first byte.</summary>
    public static void Send(SafeFd sock, ReadOnlySpan<byte> data, List<SafeFd> fds)
    {
        int space = Align(sizeof(LibC.CMsgHdr)) + Align(fds.Count * sizeof(int));
        byte* control = stackalloc byte[space];
        new Span<byte>(control, space).Clear();
        int done = 0;
        while (done < data.Length)
        {
            fixed (byte* b = data)
            {
                var iov = new LibC.IoVec { Base = b + done, Len = (nuint)(data.Length - done) };
                var msg = new LibC.MsgHdr { Iov = &iov, IovLen = 1 };
                if (done == 0 && fds.Count > 0)
                {
                    var h = (LibC.CMsgHdr*)control;
                    h->Len = (nuint)(Align(sizeof(LibC.CMsgHdr)) + fds.Count * sizeof(int));
                    h->Level = LibC.SOL_SOCKET;
                    h->Type = LibC.SCM_RIGHTS;
                    int* p = (int*)(control + Align(sizeof(LibC.CMsgHdr)));
                    for (int i = 0; i < fds.Count; i++) p[i] = fds[i].Fd;
                    msg.Control = control;
                    msg.ControlLen = (nuint)space;
                }
                nint n = LibC.SendMsg(sock.Fd, &msg, LibC.MSG_NOSIGNAL);
                if (n < 0 && LibC.Errno == LibC.EINTR) continue;
                Invariant.That(n > 0, $"sendmsg to the back-end failed: {LibC.Describe(LibC.Errno)}");
                done += (int)n;
            }
        }
    }

    /// <summary>A pipe (read end, write end), both close-on-exec.</summary>
    public static (SafeFd Read, SafeFd Write) Pipe()
    {
        int* p = stackalloc int[2];
        Invariant.That(Pipe2(p, LibC.O_CLOEXEC) == 0, "pipe2 failed");
        return (new SafeFd(p[0]), new SafeFd(p[1]));
    }

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int* fds, int flags);
}
