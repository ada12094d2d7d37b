using System.Runtime.InteropServices;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>A duplicate with FD_CLOEXEC (F_DUPFD_CLOEXEC), so no child process started meanwhile inherits it.</summary>
internal static class CloexecDup
{
    private const int FDupFdCloexec = 1030;

    public static SafeFd Of(SafeHandle h)
    {
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            int fd = LibC.Fcntl((int)h.DangerousGetHandle(), FDupFdCloexec, 0);
            Invariant.That(fd >= 0, "F_DUPFD_CLOEXEC failed");
            return new SafeFd(fd);
        }
        finally { if (added) h.DangerousRelease(); }
    }
}
