;;; selftune.el --- selftune through eglot: completions, and acceptance recorded  -*- lexical-binding: t; -*-

;; Usage (Emacs 28+ with eglot):
;;   (add-to-list 'load-path "/path/to/selftune/editor-clients/emacs")
;;   (require 'selftune)
;;   (selftune-eglot-setup "/path/to/selftune/.venv/bin/selftune")
;;   then M-x eglot in a Python buffer; completions come through `completion-at-point'.
;;   M-x selftune-trust lets the workspace run its own code (tests on save), M-x selftune-untrust withdraws it.
;;
;; Eglot inserts a completion item but (in the versions before it learnt to) does not run the item's
;; command, which is how selftune learns that a suggestion was accepted.  `selftune-eglot-setup' wraps
;; eglot's completion function so that the `selftune.accept' command of an accepted item is run.  Where
;; eglot runs it itself, the server counts the second run as the same acceptance.

;;; Code:

(require 'cl-lib)
(require 'eglot)

(defgroup selftune nil "Local code completions that learn the project." :group 'tools)

(defcustom selftune-modes '(python-mode python-ts-mode)
  "Major modes in which eglot starts selftune."
  :type '(repeat symbol))

(defcustom selftune-settings '(:maxTokens 64)
  "Server settings (README \"Settings\"), as a plist with camelCase keys."
  :type 'plist)

(defun selftune--accept-command (item)
  "The `selftune.accept' command of completion ITEM (a plist), or nil."
  (let ((command (plist-get item :command)))
    (when (and command (equal (plist-get command :command) "selftune.accept"))
      command)))

(defun selftune--wrap-exit (capf-result)
  "Make CAPF-RESULT's exit function also run an accepted selftune item's command."
  (let* ((table (nth 2 capf-result))
         (props (nthcdr 3 capf-result))
         (exit (plist-get props :exit-function)))
    (if (not exit)
        capf-result
      (append (cl-subseq capf-result 0 3)
              (plist-put (copy-sequence props) :exit-function
                         (lambda (proxy status)
                           ;; The inserted string may have lost its properties: find the item by its text.
                           (let ((item (get-text-property
                                        0 'eglot--lsp-item
                                        (or (and (get-text-property 0 'eglot--lsp-item proxy) proxy)
                                            (cl-find proxy (all-completions "" table) :test #'string=)
                                            proxy)))
                                 (server (eglot-current-server)))
                             (funcall exit proxy status) ; eglot puts the item's text in place
                             (let ((command (and item (memq status '(finished exact))
                                                 (selftune--accept-command item))))
                               (when (and command server)
                                 (eglot-execute-command server (plist-get command :command)
                                                        (plist-get command :arguments)))))))))))

(defun selftune--completion-at-point (orig &rest args)
  (let ((result (apply orig args)))
    (if (and (consp result) (eglot-current-server)) (selftune--wrap-exit result) result)))

(defun selftune--command (command)
  "Run the server COMMAND for the current buffer's eglot server."
  (let ((server (eglot-current-server)))
    (unless server
      (user-error "selftune: no eglot server in this buffer (M-x eglot first)"))
    (eglot-execute-command server command [])))

;;;###autoload
(defun selftune-trust ()
  "Allow this workspace to run its own code (tests on save, self-revision), as `selftune trust DIR' does.
The server records the folder with its .selftune/config.toml as it is now; a change to that file withdraws
the trust until you trust it again."
  (interactive)
  (selftune--command "selftune.trust"))

;;;###autoload
(defun selftune-untrust ()
  "Withdraw this workspace's trust: its code no longer runs."
  (interactive)
  (selftune--command "selftune.untrust"))

;;;###autoload
(defun selftune-eglot-setup (executable)
  "Use EXECUTABLE (`selftune') as the language server for `selftune-modes' in eglot."
  (dolist (mode selftune-modes)
    (setf (alist-get mode eglot-server-programs)
          (list executable "serve" :initializationOptions (list :selftune selftune-settings))))
  (advice-add 'eglot-completion-at-point :around #'selftune--completion-at-point))

(provide 'selftune)
;;; selftune.el ends here
